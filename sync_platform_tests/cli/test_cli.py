from typer.testing import CliRunner

from sync_platform.cli import app


def test_help_lists_the_sandbox_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "sandbox" in result.output


def test_sandbox_rejects_nonsense_options():
    result = CliRunner().invoke(app, ["sandbox", "--contacts", "0"])
    assert result.exit_code != 0 and "contacts" in result.output
    result = CliRunner().invoke(app, ["sandbox", "--conflict-share", "1.5"])
    assert result.exit_code != 0 and "conflict-share" in result.output


def test_audit_list_shows_the_newest_entries_filtered(tmp_path, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.audit import AuditEntry, AuditLog

    monkeypatch.setenv("SYNC_PLATFORM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SYNC_PLATFORM_WAREHOUSE", raising=False)
    assert "no audit entries" in CliRunner().invoke(app, ["audit", "list"]).output
    now = datetime.now(UTC)
    AuditLog(Warehouse.from_env()).record(
        AuditEntry(
            "r1",
            "ingest",
            "hubspot",
            "contacts",
            now - timedelta(minutes=5),
            now,
            records_read=12,
            inserted=2,
            updated=10,
        ),
        AuditEntry(
            "r2",
            "canonical",
            None,
            "contact",
            now,
            now,
            records_read=9,
            updated=3,
            changed_fields={"title": 3},
        ),
        AuditEntry(
            "r3", "ingest", "dynamics", "contacts", now, now, status="failed", error_class="server_error"
        ),
    )
    result = CliRunner().invoke(app, ["audit", "list", "--step", "ingest", "--crm", "hubspot"])
    assert result.exit_code == 0
    assert "hubspot" in result.output and "read=12 ins=2 upd=10" in result.output
    assert "dynamics" not in result.output and "canonical" not in result.output
    result = CliRunner().invoke(app, ["audit", "list", "--limit", "2", "--details"])
    assert "changed title=3" in result.output and "error=server_error" in result.output
    assert "hubspot" not in result.output, "--limit keeps the newest"


def test_the_package_runs_as_a_module_as_the_benchmarks_start_it() -> None:
    """``python -m sync_platform.cli`` broke when the CLI became a package; the benchmarks hung on it."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "sync_platform.cli", "sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--contacts" in done.stdout
