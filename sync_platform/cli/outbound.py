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
