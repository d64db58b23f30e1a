"""Conflicts between a CRM's edit and an outbound change, one per strategy, through the CLI and
the sandbox: the CRM edits a field after the support system asked to change it, before the
write-back runs."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sync_platform.cli import app


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_each_strategy_settles_its_conflicts_and_manual_review_waits_for_a_person(harness) -> None:
    harness.run("salesforce")
    harness.run("hubspot")  # the versions the support system sees
    sf = [r[0] for r in harness.rows("SELECT id FROM raw_salesforce.contacts ORDER BY id LIMIT 4")]
    hs = [r[0] for r in harness.rows("SELECT id FROM raw_hubspot.contacts ORDER BY id LIMIT 1")]
    asks = {
        "lww-ours": (f"salesforce:{sf[0]}", {"title": "Ours 1"}),
        "lww-crm": (f"salesforce:{sf[1]}", {"title": "Ours 2"}),
        "merge": (f"hubspot:{hs[0]}", {"title": "Ours 3", "email_opt_out": True}),
        "review": (f"salesforce:{sf[2]}", {"lifecycle_stage": "customer"}),
        "plain": (f"salesforce:{sf[3]}", {"title": "Ours 5"}),
    }
    for change_id, (target, fields) in asks.items():
        cli(
            "outbound",
            "put",
            "contact",
            "--target",
            target,
            "--json",
            json.dumps(fields),
            "--change-id",
            change_id,
        )
    # meanwhile, people edit the same fields in the CRMs
    harness.admin.update("salesforce", "Contact", [sf[0]], {"Title": "Theirs 1"})
    harness.admin.update("hubspot", "contacts", [hs[0]], {"jobtitle": "Theirs 3"})
    harness.admin.update("salesforce", "Contact", [sf[2]], {"Customer_Status__c": "Churned"})
    harness.admin.advance(3600)  # an hour later on the CRM's clock: newer than the request by far
    harness.admin.update("salesforce", "Contact", [sf[1]], {"Title": "Theirs 2"})
    harness.run("salesforce")
    harness.run("hubspot")

    cli("outbound", "run")
    sf_title = {i: harness.admin.get("salesforce", "Contact", i)["Title"] for i in sf}
    assert sf_title[sf[0]] == "Ours 1", "last write wins: the request is the later change"
    assert sf_title[sf[1]] == "Theirs 2", "last write wins: the CRM's edit is an hour newer"
    assert sf_title[sf[3]] == "Ours 5", "no conflict: only our side changed it"
    merged = harness.admin.get("hubspot", "contacts", hs[0])
    assert merged["jobtitle"] == "Theirs 3" and merged["hs_email_optout"] in (True, "true"), (
        "field merge: the CRM keeps the field both changed, ours lands where only we changed it"
    )
    assert harness.admin.get("salesforce", "Contact", sf[2])["Customer_Status__c"] == "Churned", "held"

    waiting = cli("outbound", "conflicts", "list")
    assert waiting.startswith("1 conflict(s) waiting") and "review:salesforce" in waiting
    assert "lifecycle_stage (manual_review): base " in waiting and "crm 'Churned'" in waiting
    every = cli("outbound", "conflicts", "list", "--all")
    assert "lww-ours:salesforce" in every and "lww-crm:salesforce" in every and "merge:hubspot" in every
    assert "plain:salesforce" not in every

    cli("outbound", "conflicts", "resolve", "review:salesforce", "--take", "ours")
    cli("outbound", "run")
    assert harness.admin.get("salesforce", "Contact", sf[2])["Customer_Status__c"] == "Active"
    (audit,) = harness.rows("SELECT details FROM ops.audit_log WHERE step = 'conflict_review'")
    assert '"take": "ours"' in audit[0]
    assert cli("outbound", "conflicts", "list").startswith("0 conflict(s)")
    assert cli("outbound", "status").count("written") == 2, (
        "salesforce and hubspot rows, every change answered"
    )
