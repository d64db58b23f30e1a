"""Dead-letter depth and sync error rate per CRM, as alert findings with the error taxonomy.

Dead letters are requests that failed for good (``ops.dead_letters``); any pending one means
data is missing until it is replayed. The error rate looks at the CRM's recent ``<crm>_sync``
runs in the Dagster instance, so a CRM that fails every other run is noticed even when each
failure is replayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sync_platform.core.config import AlertsConfig
from sync_platform.core.sql import placeholders, sql
from sync_platform.ops.alerts import Finding
from sync_platform.ops.dead_letters import DeadLetter
from sync_platform.security.redaction import redact_text

DEAD_LETTER_SCOPE = "dead_letters:"
ERROR_RATE_SCOPE = "error_rate:"
SAMPLE_ERRORS = 3


def dead_letter_findings(pending: Iterable[DeadLetter], config: AlertsConfig) -> list[Finding]:
    """A finding per CRM whose pending depth passes ``dead_letter_max_depth``; error above the error depth."""
    by_crm: dict[str, list[DeadLetter]] = {}
    for letter in pending:
        by_crm.setdefault(letter.crm, []).append(letter)
    findings = []
    for crm, letters in sorted(by_crm.items()):
        depth = len(letters)
        if depth <= config.dead_letter_max_depth:
            continue
        kinds = Counter(d.kind for d in letters)
        severity = "error" if depth > config.dead_letter_error_depth else "warning"
        summary = ", ".join(f"{kind} {n}" for kind, n in kinds.most_common())
        findings.append(
            Finding(
                key=f"{DEAD_LETTER_SCOPE}{crm}",
                severity=severity,
                finding="dead_letters_pending",
                message=f"{depth} dead letter(s) pending for {crm} ({summary}); "
                "replay with `sync-platform dlq replay`",
                crm=crm,
                details={
                    "depth": depth,
                    "threshold": config.dead_letter_max_depth,
                    "error_threshold": config.dead_letter_error_depth,
                    "by_kind": dict(kinds),
                    "by_object": dict(Counter(d.object for d in letters)),
                    "oldest": min(d.created_at for d in letters).isoformat(),
                    "sample_errors": [redact_text(d.error)[:300] for d in letters[:SAMPLE_ERRORS]],
                    "run_ids": sorted({d.run_id for d in letters if d.run_id})[:10],
                },
            )
        )
    return findings


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    failed: bool


def error_rate_findings(
    runs_by_crm: Mapping[str, Sequence[RunOutcome]], letters: Iterable[DeadLetter], config: AlertsConfig
) -> list[Finding]:
    """A finding per CRM whose failed share of recent runs passes ``error_rate_max`` (error when all failed).

    The taxonomy comes from the dead letters those failed runs wrote (``unclassified`` when a run
    failed without one, e.g. a bug rather than a CRM error).
    """
    kinds_by_run: dict[str, set[str]] = {}
    for letter in letters:
        if letter.run_id:
            kinds_by_run.setdefault(letter.run_id, set()).add(letter.kind)
    findings = []
    for crm, runs in sorted(runs_by_crm.items()):
        if len(runs) < config.error_rate_min_runs:
            continue
        failed = [r for r in runs if r.failed]
        rate = len(failed) / len(runs)
        if rate <= config.error_rate_max:
            continue
        taxonomy: Counter[str] = Counter()
        for run in failed:
            taxonomy.update(kinds_by_run.get(run.run_id) or {"unclassified"})
        summary = ", ".join(f"{kind} {n}" for kind, n in taxonomy.most_common())
        findings.append(
            Finding(
                key=f"{ERROR_RATE_SCOPE}{crm}",
                severity="error" if len(failed) == len(runs) else "warning",
                finding="sync_error_rate",
                crm=crm,
                message=f"{len(failed)} of the last {len(runs)} {crm} syncs failed ({rate:.0%} > "
                f"{config.error_rate_max:.0%}): {summary}",
                details={
                    "failed": len(failed),
                    "runs": len(runs),
                    "error_rate": round(rate, 4),
                    "threshold": config.error_rate_max,
                    "by_kind": dict(taxonomy),
                    "failed_run_ids": [r.run_id for r in failed][:10],
                },
            )
        )
    return findings


def dead_letters_of_runs(warehouse, run_ids: Sequence[str]) -> list[DeadLetter]:
    """Dead letters written by these runs, replayed or not (the taxonomy of their failures)."""
    if not run_ids or not warehouse.table_exists("ops", "dead_letters"):
        return []
    rows = warehouse.query(
        sql(
            "SELECT id, crm, object, kind, http_status, request, payload_ref, attempts, error, run_id, "
            "created_at, replayed_at FROM ops.dead_letters WHERE run_id IN ({marks})",
            marks=placeholders(len(run_ids)),
        ),
        tuple(run_ids),
    )
    return [DeadLetter(*row) for row in rows]
