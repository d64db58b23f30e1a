"""``sync-platform``: the command line of the platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sync_platform.core.settings import load_settings

app = typer.Typer(
    name="sync-platform",
    help="Keep CRM data (Salesforce, HubSpot, Dynamics 365) in sync with a warehouse, "
    "and notice when it is not.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Keep CRM data in sync with a warehouse, and notice when it silently is not."""


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8765,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls", help="Serve HTTPS with a freshly generated CA (simple-salesforce only speaks https)."
        ),
    ] = False,
    contacts: Annotated[
        int, typer.Option(min=1, help="Contacts per CRM; accounts are 1/10, interactions 1/2.")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the deterministic record generator.")] = 42,
    conflict_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of the people and companies several CRMs hold that carry one real conflict "
            "(one CRM holds another title, phone or lifecycle stage); the rest agree.",
        ),
    ] = 0.02,
    token_lifetime: Annotated[float, typer.Option(min=1, help="Access-token lifetime in seconds.")] = 3600,
    hubspot_per_10s: Annotated[int, typer.Option(min=1, help="HubSpot requests per rolling 10 s.")] = 190,
    salesforce_daily: Annotated[
        int, typer.Option(min=1, help="Salesforce daily API request budget.")
    ] = 100_000,
    dynamics_per_5min: Annotated[
        int, typer.Option(min=1, help="Dynamics requests per 5-minute window.")
    ] = 6_000,
    tls_dir: Annotated[
        Path | None,
        typer.Option(help="Where to write the CA and server certificate (default: data/sandbox/tls)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print connection details as JSON.")] = False,
) -> None:
    """Run the local CRM sandbox: Salesforce, HubSpot and Dynamics 365 APIs on one port."""
    from sync_platform.sandbox import SandboxConfig, SandboxServer
    from sync_platform.sandbox.limits import LimitConfig

    config = SandboxConfig(
        contacts=contacts,
        seed=seed,
        conflict_share=conflict_share,
        token_lifetime_seconds=token_lifetime,
        limits=LimitConfig(
            hubspot_per_10s=hubspot_per_10s,
            salesforce_daily=salesforce_daily,
            dynamics_per_5min=dynamics_per_5min,
        ),
    )
    if tls and tls_dir is None:
        tls_dir = load_settings().sandbox_dir / "tls"
    try:
        server = SandboxServer(config, host=host, port=port, tls=tls, tls_dir=tls_dir, log_level="warning")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot listen on {host}:{port}: {exc.strerror}", param_hint="--port"
        ) from None
    details = {
        "base_url": server.base_url,
        "admin_url": f"{server.base_url}/__sandbox/",
        "ca_file": server.ca_file,
        "credentials": server.state.credentials(),
    }
    if as_json:
        typer.echo(json.dumps(details, indent=2))
    else:
        typer.echo(f"CRM sandbox serving {contacts:,} contacts per CRM (seed {seed}) at {server.base_url}")
        typer.echo(f"  admin API      {details['admin_url']}")
        if server.ca_file:
            typer.echo(f"  CA certificate {server.ca_file}  (clients: verify=<this file>)")
        for crm, creds in details["credentials"].items():
            typer.echo(f"  {crm}")
            for key, value in creds.items():
                typer.echo(f"    {key:18} {value}")
        typer.echo("These are sandbox-only credentials. Press Ctrl-C to stop.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    contacts: Annotated[int, typer.Option(min=10, help="Contacts per CRM in the sandbox.")] = 20_000,
) -> None:
    """Run the main job end to end: sandbox, full sync of all CRMs via Dagster, changes, incremental sync."""
    from sync_platform.cli.demo import run_demo

    run_demo(contacts, echo=typer.echo)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="The webserver's port on 127.0.0.1.")] = 3000,
    contacts: Annotated[int, typer.Option(min=10, help="Contacts per CRM when the sandbox starts.")] = 20_000,
) -> None:
    """Open the Dagster UI on a prepared instance: the CRM sandbox unless CRMs are configured."""
    import contextlib
    import os
    import subprocess
    import sys

    from sync_platform.core.instance import ensure_dagster_home
    from sync_platform.core.settings import PROJECT_ROOT, SANDBOX_URL_ENV
    from sync_platform.sandbox import SandboxConfig, SandboxServer

    settings = load_settings()
    home = ensure_dagster_home(settings.dagster_home)  # created if missing, with its dagster.yaml
    env = dict(os.environ, DAGSTER_HOME=str(home))
    with contextlib.ExitStack() as stack:
        if settings.sandbox_url:
            typer.echo(f"CRMs: the sandbox at {settings.sandbox_url}")
        elif settings.crm_credentials_in_env or (PROJECT_ROOT / ".dlt" / "secrets.toml").exists():
            typer.echo("CRMs: the configured credentials (SOURCES__... or .dlt/secrets.toml)")
        else:
            server = stack.enter_context(SandboxServer(SandboxConfig(contacts=contacts)))
            env[SANDBOX_URL_ENV] = server.base_url
            typer.echo(f"CRMs: a CRM sandbox with {contacts:,} contacts per CRM at {server.base_url}")
        typer.echo(f"Dagster home: {home}")
        typer.echo(
            f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops it)",
        )
        dagster = str(Path(sys.executable).parent / "dagster")
        command = [
            dagster,
            "dev",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        with contextlib.suppress(KeyboardInterrupt):
            subprocess.run(command, env=env, cwd=PROJECT_ROOT, check=False)


@app.command()
def status() -> None:
    """Per CRM: last run, last sync, lag, dead letters and drift; then the open alerts."""
    import dagster as dg

    from sync_platform.core.instance import ensure_dagster_home
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.monitor.status import gather_status, render

    ensure_dagster_home(load_settings().dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            report = gather_status(instance, Warehouse.from_env())
    except Exception as exc:
        if "lock" not in str(exc).lower():
            raise
        typer.echo("the DuckDB warehouse is locked by a running sync; try again in a moment", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(render(report))


dlq = typer.Typer(
    help="Dead letters: CRM requests that failed for good, kept with the reason.", no_args_is_help=True
)
app.add_typer(dlq, name="dlq")


@dlq.command("list")
def dlq_list(
    crm: Annotated[str | None, typer.Option(help="Only this CRM.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include entries already replayed.")] = False,
) -> None:
    """List dead letters (pending ones unless --all)."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.dead_letters import DeadLetterQueue

    queue = DeadLetterQueue(Warehouse.from_env())
    letters = queue.all(crm) if show_all else queue.pending(crm)
    if not letters:
        typer.echo("no dead letters" + ("" if show_all else " pending"))
        return
    for d in letters:
        state = f"replayed {d.replayed_at:%Y-%m-%d %H:%M}" if d.replayed_at else "pending"
        typer.echo(
            f"{d.created_at:%Y-%m-%d %H:%M:%S}  {d.crm:<10} {d.object:<10} {d.kind:<12} "
            f"attempts={d.attempts}  {state}  {d.request or ''}"
        )
        typer.echo(f"    {d.error}")


@dlq.command("replay")
def dlq_replay(crm: Annotated[str | None, typer.Option(help="Only this CRM.")] = None) -> None:
    """Re-drive pending dead letters: re-run each affected CRM's sync from its unchanged cursor."""
    from sync_platform.cli.jobs import rerun_crm_sync
    from sync_platform.core.config import load_sync_config
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ingest.replay import replay_dead_letters

    outcome = replay_dead_letters(Warehouse.from_env(), load_sync_config(), rerun_crm_sync, crm)
    if not outcome:
        typer.echo("nothing to replay")
        return
    failed = False
    for name, (ok, count, detail) in outcome.items():
        typer.echo(f"{name}: {'replayed' if ok else 'still failing'} ({count} dead letter(s)) {detail}")
        failed |= not ok
    if failed:
        raise typer.Exit(code=1)


mapping_cli = typer.Typer(help="Field mappings (data/mappings/*.yaml).", no_args_is_help=True)
app.add_typer(mapping_cli, name="mapping")


@mapping_cli.command("check")
def mapping_check(
    directory: Annotated[Path | None, typer.Option(help="Mappings folder (default: data/mappings).")] = None,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--no-live",
            help="Also check every source field against the CRM's metadata (describe, properties, "
            "EntityDefinitions). Default: whenever the sandbox URL or CRM credentials are configured.",
        ),
    ] = None,
    impact: Annotated[
        bool,
        typer.Option(
            "--impact",
            help="Also build every entity with these files against the warehouse's raw data (nothing is "
            "written) and show what would change against the published tables.",
        ),
    ] = False,
) -> None:
    """Validate every mapping file; exit 1 naming the file, key and problem of the first bad one.

    With --impact, exit 2 when a build with these files would exceed the change-impact limits."""
    from sync_platform.canonical.mapping.loader import MappingError, load_mappings

    try:
        mappings = load_mappings(directory)
    except MappingError as exc:
        typer.echo(f"invalid mapping: {exc}", err=True)
        raise typer.Exit(code=1) from None
    if not mappings:
        typer.echo("no mapping files found", err=True)
        raise typer.Exit(code=1)
    for crm, mapping in sorted(mappings.items()):
        typer.echo(f"ok  {mapping.file}  (crm {crm}, version {mapping.version})")
    if live is not False:
        _mapping_check_live(mappings, required=live is True)
    if impact:
        from sync_platform.cli.canonical import print_impact

        print_impact(mappings)


def _mapping_check_live(mappings: dict, required: bool) -> None:
    from sync_platform.canonical.mapping.live_check import check_live
    from sync_platform.outbound.plan import writeback_problems

    report = check_live(mappings, also=writeback_problems)
    if not required and not report.checked:
        return  # nothing configured to check against: the offline check is all there is
    for crm, why in sorted(report.skipped.items()):
        typer.echo(f"live: {crm} skipped: {why}", err=required)
    for crm, checked in sorted(report.checked.items()):
        bad = sum(1 for p in report.problems if p.file == mappings[crm].file)
        typer.echo(f"live: {crm}: {checked - bad} of {checked} source fields exist and are readable")
    for problem in report.problems:
        typer.echo(f"live: {problem}", err=True)
    if report.problems or (required and report.skipped):
        raise typer.Exit(code=1)


quarantine_cli = typer.Typer(
    help="Rows the quality gates rejected, with the rule they broke.", no_args_is_help=True
)
app.add_typer(quarantine_cli, name="quarantine")


@quarantine_cli.command("list")
def quarantine_list(
    entity: Annotated[str | None, typer.Option(help="contact, account or interaction.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many entries, newest first.")] = 50,
) -> None:
    """Show the newest quarantined rows (values masked)."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.quarantine import latest

    rows = latest(Warehouse.from_env(), entity, limit)
    if rows.is_empty():
        typer.echo("quarantine is empty")
        return
    for r in rows.iter_rows(named=True):
        released = f"  released {r['released_at']:%Y-%m-%d}" if r["released_at"] else ""
        typer.echo(
            f"{r['quarantined_at']:%Y-%m-%d %H:%M}  {r['entity']:<11} {r['source_system']:<10} "
            f"{r['source_id']:<38} {r['rule']:<26} {r['column']}={r['value_masked']}{released}"
        )


@quarantine_cli.command("release")
def quarantine_release(
    source_system: Annotated[str, typer.Argument(help="salesforce, hubspot or dynamics.")],
    source_id: Annotated[str, typer.Argument(help="The record's id in that CRM.")],
) -> None:
    """Mark a record's quarantine entries reviewed. It re-enters the canonical model once it passes."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.quarantine import release

    released = release(Warehouse.from_env(), source_system, source_id)
    if not released:
        typer.echo(f"no open quarantine entries for {source_system} {source_id}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"released {released} entr{'y' if released == 1 else 'ies'} for {source_system} {source_id}")


audit_cli = typer.Typer(
    help="The audit trail: what every sync step read, changed and how it ended.", no_args_is_help=True
)
app.add_typer(audit_cli, name="audit")


@audit_cli.command("list")
def audit_list(
    step: Annotated[str | None, typer.Option(help="ingest, canonical, reconcile, retention, ...")] = None,
    crm: Annotated[str | None, typer.Option(help="Only this CRM.")] = None,
    entity: Annotated[
        str | None, typer.Option(help="Only this object or entity (contacts, contact, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many entries, newest first.")] = 20,
    details: Annotated[
        bool, typer.Option("--details", help="Also print each entry's details (redacted JSON).")
    ] = False,
) -> None:
    """Show the newest audit-log entries (values redacted)."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.audit import AuditLog

    rows = AuditLog(Warehouse.from_env()).entries(step=step, crm=crm, entity=entity, limit=limit)
    if rows.is_empty():
        typer.echo("no audit entries")
        return
    for r in rows.iter_rows(named=True):
        seconds = (r["ended_at"] - r["started_at"]).total_seconds()
        error = f"  error={r['error_class']}" if r["error_class"] else ""
        changed = json.loads(r["changed_fields"])
        fields = "  changed " + ", ".join(f"{k}={v}" for k, v in changed.items()) if changed else ""
        typer.echo(
            f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['step']:<10} {r['crm'] or '-':<10} {r['entity']:<13} "
            f"{r['status']:<8} read={r['records_read']} ins={r['inserted']} upd={r['updated']} "
            f"del={r['deleted']} rej={r['rejected']} {seconds:.1f}s{error}{fields}"
        )
        if details:
            typer.echo(f"    {r['details']}")


# ---------------------------------------------------------------- PII: encrypted fields, keys, erasure
from sync_platform.cli.canonical import canonical_cli, hold_cli, mapping_approve  # noqa: E402
from sync_platform.cli.history import history  # noqa: E402
from sync_platform.cli.outbound import outbound_cli, restore, review  # noqa: E402

app.add_typer(canonical_cli, name="canonical")
app.add_typer(hold_cli, name="hold")
mapping_cli.command("approve")(mapping_approve)
app.command("history")(history)
app.add_typer(outbound_cli, name="outbound")
app.command("restore")(restore)
app.command("review")(review)


keys_cli = typer.Typer(help="Field-encryption keys (see README: key rotation).", no_args_is_help=True)
app.add_typer(keys_cli, name="keys")


@keys_cli.command("generate")
def keys_generate() -> None:
    """Print a new random key, to put first in SYNC_PLATFORM_FIELD_KEYS (or the key file)."""
    from sync_platform.security.encryption import generate_key

    typer.echo(generate_key())


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt the canonical tables' sensitive columns under the newest key (run while no build runs)."""
    from sync_platform.canonical.protection import rotate_tables
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.security.encryption import EncryptionError, field_cipher

    try:
        cipher = field_cipher()
        rotated = rotate_tables(Warehouse.from_env(), cipher)
    except EncryptionError as exc:
        typer.echo(f"cannot rotate: {exc}", err=True)
        raise typer.Exit(code=1) from None
    for table, count in rotated.items():
        typer.echo(f"canonical.{table}: {count} value(s) re-encrypted under key {cipher.current}")
    typer.echo(f"done: every sensitive value is under key {cipher.current}; older keys may now be dropped")


@app.command()
def erase(
    email: Annotated[str | None, typer.Option(help="The person's email address.")] = None,
    source: Annotated[str | None, typer.Option(help="With --id: the CRM holding the record.")] = None,
    record_id: Annotated[
        str | None, typer.Option("--id", help="With --source: the record's id in that CRM.")
    ] = None,
) -> None:
    """Erase a person: remove them from canonical data, mask them in operational tables, keep them out."""
    from sync_platform.canonical.erasure import erase as run_erasure
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.security.encryption import EncryptionError

    if (email is None) == (record_id is None) or (record_id is not None and source is None):
        raise typer.BadParameter("give --email, or --source and --id")
    try:
        outcome = run_erasure(Warehouse.from_env(), email=email, source_system=source, source_id=record_id)
    except EncryptionError as exc:
        typer.echo(f"cannot erase: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(
        f"erasure request {outcome.request_id}: "
        f"{outcome.records_erased} canonical contact record(s) removed, "
        f"{outcome.interactions_unlinked} case link(s) cleared, "
        f"{outcome.audit_entries_masked} audit entr(ies) masked, "
        f"{outcome.quarantine_entries} quarantine entr(ies) removed or masked, "
        f"{outcome.dead_letters_masked} dead letter(s) masked"
    )
    typer.echo(
        "suppressed: later canonical builds keep this person out; erasing them in the CRM is its owner's job"
    )


if __name__ == "__main__":
    app()
