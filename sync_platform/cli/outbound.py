"""``sync-platform outbound put|run|status``: write-back from the command line.

The support system inserts into ``outbound.changes`` itself; ``put`` does the same for people and
tests, ``run`` sends what is pending now (the ``outbound_sync`` job, in this process, on the
Dagster instance), ``status`` counts the answers per entity, CRM and status.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

outbound_cli = typer.Typer(help="Write-back: changes into the CRMs (outbound.changes).", no_args_is_help=True)


def _fields(pairs: list[str], as_json: str | None) -> dict:
    fields: dict = {}
    if as_json:
        try:
            loaded = json.loads(as_json)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--json") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("a JSON object of canonical field names to values", param_hint="--json")
        fields.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--set")
        fields[name.strip()] = value
    return fields


@outbound_cli.command("put")
def put(
    entity: Annotated[str, typer.Argument(help="contact, account or interaction.")],
    set_: Annotated[
        list[str], typer.Option("--set", help="A canonical field and its new value, NAME=VALUE (repeatable).")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    as_json: Annotated[
        str | None,
        typer.Option("--json", help='Fields as a JSON object, for typed values: {"email_opt_out": true}.'),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="A golden id (cus_..., acc_...) or <crm>:<record id>; leave out to create a record."
        ),
    ] = None,
    change_id: Annotated[
        str | None, typer.Option(help="Your idempotency key: the same key again is the same change.")
    ] = None,
) -> None:
    """Ask for a change in canonical terms; the next outbound run writes it into every CRM it targets."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.approvals import who
    from sync_platform.outbound.store import OutboundStore

    try:
        change = OutboundStore(Warehouse.from_env()).put(
            entity, _fields(set_, as_json), target=target, change_id=change_id, requested_by=who()
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(
        f"change {change.change_id} queued ({entity}, {len(change.fields)} field(s)); run `outbound run`"
    )


@outbound_cli.command("run")
def run() -> None:
    """Send the pending changes now (the outbound_sync job); exit 1 when a CRM could not be reached."""
    from sync_platform.cli.jobs import first_failure, run_job
    from sync_platform.core.instance import ensure_dagster_home
    from sync_platform.core.settings import load_settings

    ensure_dagster_home(load_settings().dagster_home)
    result = run_job("outbound_sync", raise_on_error=False)
    for event in result.get_asset_materialization_events():
        meta = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
        typer.echo(json.dumps(meta, sort_keys=True, default=str))
    if not result.success:
        typer.echo(f"outbound_sync failed: {first_failure(result)}", err=True)
        raise typer.Exit(code=1)


@outbound_cli.command("status")
def status() -> None:
    """Answers per entity, CRM and status."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.outbound.store import OutboundStore

    store = OutboundStore(Warehouse.from_env())
    store.ensure()
    for entity, crm, state, count in store.status():
        typer.echo(f"{entity:12} {crm:11} {state:8} {count}")


conflicts_cli = typer.Typer(help="Conflicts between CRM changes and outbound changes.", no_args_is_help=True)
outbound_cli.add_typer(conflicts_cli, name="conflicts")


@conflicts_cli.command("list")
def conflicts_list(
    every: Annotated[bool, typer.Option("--all", help="Settled ones too (auto and resolved).")] = False,
    decrypt: Annotated[
        bool, typer.Option("--decrypt", help="Show personal values in clear (needs the key).")
    ] = False,
) -> None:
    """Open conflicts (or all): per field the base, the CRM's value, ours, and what was decided."""
    from sync_platform.cli.history import _shown, personal_columns, require_key
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ingest.raw_schema import raw_column
    from sync_platform.outbound.conflicts import OPEN, ConflictBook

    if decrypt:
        require_key()
    found = ConflictBook(Warehouse.from_env()).all(None if every else OPEN)
    typer.echo(f"{len(found)} conflict(s)" + ("" if every else " waiting for a decision"))
    for c in found:
        personal = None if decrypt else personal_columns(c.crm)
        decided = f" -> {c.decision['take']} by {c.decided_by}" if c.decision else ""
        typer.echo(f"{c.conflict_id}  {c.crm} {c.crm_object} {c.record_id}  {c.status}{decided}")
        for f in c.fields:
            column = raw_column(f.crm_field)
            shown = [_shown(column, v, personal) for v in (f.base, f.crm, f.ours)]
            typer.echo(
                f"    {f.field} ({f.strategy}): base {shown[0]!r}, crm {shown[1]!r} "
                f"(changed {f.crm_changed_at}), ours {shown[2]!r} -> {f.outcome}"
            )


@conflicts_cli.command("resolve")
def conflicts_resolve(
    conflict_id: Annotated[str, typer.Argument(help="As listed: <change id>:<crm>.")],
    take: Annotated[str, typer.Option(help="crm (keep the CRM's values), ours (write ours) or edit.")],
    set_: Annotated[
        list[str], typer.Option("--set", help="edit: a conflicting field and the value to write, NAME=VALUE.")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
) -> None:
    """Decide an open conflict; the next outbound run writes the decision (audited)."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.approvals import who
    from sync_platform.outbound.conflicts import ConflictBook

    try:
        ConflictBook(Warehouse.from_env()).resolve(conflict_id, take, who(), _fields(set_, None) or None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"conflict {conflict_id} resolved: {take}; run `outbound run` to write it")


def review(
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs the token or users setting.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8770,
) -> None:
    """The review queue page: open conflicts and dead letters, decided in a browser (Ctrl-C stops it)."""
    from sync_platform.outbound.review import ReviewServer

    try:
        server = ReviewServer(host, port)
    except (ValueError, OSError) as exc:
        typer.echo(f"cannot serve the review page: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"review page on {server.base_url} (Ctrl-C stops it)")
    server.serve_forever()


def restore(
    crm: Annotated[str, typer.Option(help="salesforce, hubspot or dynamics.")],
    object_: Annotated[str, typer.Option("--object", help="The raw table: contacts, accounts, cases, ...")],
    before: Annotated[str, typer.Option(help="ISO time: restore the values the records had just before it.")],
    ids: Annotated[
        str | None, typer.Option(help="Comma-separated record ids (default: every record).")
    ] = None,
    fields: Annotated[
        str | None, typer.Option(help="Comma-separated CRM fields (default: every writable one).")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Write into the CRM; without it, only show the diff.")
    ] = False,
    decrypt: Annotated[
        bool, typer.Option("--decrypt", help="Show personal values in clear (needs the key).")
    ] = False,
) -> None:
    """Put back the values records had before a time, in the CRM itself (dry run unless --yes)."""
    from datetime import UTC, datetime

    from sync_platform.cli.history import _shown, personal_columns, require_key
    from sync_platform.core.config import load_sync_config
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ingest.raw_schema import raw_column
    from sync_platform.outbound.restore import plan_restore, record_restore
    from sync_platform.outbound.writers import make_writer

    try:
        when = datetime.fromisoformat(before)
    except ValueError:
        raise typer.BadParameter("an ISO time, e.g. 2026-12-01T09:30:00Z", param_hint="--before") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if decrypt:
        require_key()
    warehouse = Warehouse.from_env()
    try:
        plan = plan_restore(warehouse, crm, object_, when, _split(ids), _split(fields))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    personal = None if decrypt else personal_columns(crm)
    records = {w.record_id for w in plan.writes}
    typer.echo(f"{crm} {object_} before {when.isoformat()}: {len(records)} record(s) differ")
    for record_id, crm_field, now, then in plan.changes[:200]:
        column = raw_column(crm_field)
        was, back = _shown(column, now, personal), _shown(column, then, personal)
        typer.echo(f"  {record_id} {crm_field}: {was!r} -> {back!r}")
    if plan.no_earlier_version:
        typer.echo(f"  {len(plan.no_earlier_version)} record(s) created after that time: left as they are")
    if not yes:
        typer.echo("dry run: nothing written (add --yes to write these values into the CRM)")
        return
    writer = make_writer(crm, load_sync_config().crm(crm))
    results = writer.write(plan.writes)
    failed = [r for r in results if not r.ok]
    record_restore(warehouse, plan, results)
    typer.echo(f"restored {len(results) - len(failed)} record(s) in {crm}; {len(failed)} refused")
    for result in failed[:20]:
        typer.echo(f"  {result.ref}: {result.error}", err=True)
    if failed:
        raise typer.Exit(code=1)


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None
