"""``sync-platform canonical``: read the canonical tables, approve a blocked build, restore a kept one."""

from __future__ import annotations

from typing import Annotated

import typer

canonical_cli = typer.Typer(
    help="The canonical model's tables: show, builds, restore, approve.", no_args_is_help=True
)

_TABLES = {
    "contact": "contacts",
    "account": "accounts",
    "interaction": "interactions",
    "shareable": "contacts_shareable",
}


@canonical_cli.command("show")
def canonical_show(
    entity: Annotated[
        str, typer.Option(help="contact, account, interaction or shareable (shareable contacts).")
    ] = "contact",
    decrypt: Annotated[
        bool,
        typer.Option(
            "--decrypt",
            help="Show sensitive columns in clear (needs the field key; for authorized use only).",
        ),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many rows.")] = 20,
) -> None:
    """Print canonical rows; sensitive columns stay encrypted unless --decrypt."""
    import polars as pl

    from sync_platform.canonical.protection import read_table
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.security.encryption import EncryptionError

    if entity not in _TABLES:
        raise typer.BadParameter(f"choose from {', '.join(_TABLES)}", param_hint="--entity")
    warehouse = Warehouse.from_env()
    if not warehouse.table_exists("canonical", _TABLES[entity]):
        typer.echo(f"canonical.{_TABLES[entity]} does not exist yet: run the canonical_build job", err=True)
        raise typer.Exit(code=1)
    try:
        frame = read_table(warehouse, _TABLES[entity], decrypt=decrypt, limit=limit)
    except EncryptionError as exc:
        typer.echo(f"cannot decrypt: {exc}", err=True)
        raise typer.Exit(code=1) from None
    with pl.Config(tbl_rows=limit, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=240):
        typer.echo(frame.drop([c for c in frame.columns if c.startswith("_dlt_")]))


def _entity(entity: str) -> str:
    from sync_platform.canonical.model import ENTITY_TABLES

    if entity not in ENTITY_TABLES:
        raise typer.BadParameter(f"choose from {', '.join(ENTITY_TABLES)}", param_hint="ENTITY")
    return entity


@canonical_cli.command("builds")
def canonical_builds(
    entity: Annotated[
        str | None, typer.Argument(help="contact, account or interaction; all if left out.")
    ] = None,
) -> None:
    """The kept canonical builds, newest first: what `canonical restore --build` can put back."""
    from sync_platform.canonical.history import BuildHistory
    from sync_platform.core.warehouse import Warehouse

    builds = BuildHistory(Warehouse.from_env()).builds(_entity(entity) if entity else None)
    if not builds:
        typer.echo("no canonical build kept yet: run the canonical_build job")
        return
    for b in builds:
        restored = f"  restored from {b.restored_from}" if b.restored_from else ""
        typer.echo(
            f"{b.build_id}  {b.entity:<11} {b.published_at:%Y-%m-%d %H:%M:%S}  {b.row_count:>9} rows  "
            f"mappings {b.mapping_versions}{restored}"
        )


@canonical_cli.command("restore")
def canonical_restore(
    build: Annotated[
        str, typer.Option("--build", help="The build id (see `sync-platform canonical builds`).")
    ],
) -> None:
    """Put a kept build back as the published canonical table (audited; itself a new kept build).

    Downstream tables (e.g. contacts_shareable) follow on their next materialization.
    """
    from sync_platform.canonical.history import BuildHistory, UnknownBuild
    from sync_platform.core.config import load_sync_config
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.approvals import who

    history = BuildHistory(Warehouse.from_env(), load_sync_config().history.canonical_builds)
    try:
        restored = history.restore(build, run_id=None, by=who())
    except UnknownBuild as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    typer.echo(
        f"canonical.{restored.table_name} restored from {build} ({restored.row_count} rows); "
        f"recorded as build {restored.build_id}"
    )


@canonical_cli.command("approve")
def canonical_approve(
    entity: Annotated[str, typer.Argument(help="contact, account or interaction.")],
    reason: Annotated[str, typer.Option(help="Why this change is intended (kept in the audit trail).")],
) -> None:
    """Let the entity's next build through the change-impact gate, once (audited)."""
    from sync_platform.canonical.publish import approval_scope
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.approvals import Approvals

    try:
        approval = Approvals(Warehouse.from_env()).grant(approval_scope(_entity(entity)), reason)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--reason") from None
    typer.echo(
        f"approval {approval.id} by {approval.approved_by}: the next {entity} build publishes even beyond "
        "the change-impact limits; run the canonical_build job"
    )


hold_cli = typer.Typer(
    help="Holds on canonical entities (placed by a CRM-side mass change): list, release.",
    no_args_is_help=True,
)


@hold_cli.command("list")
def hold_list(
    all_holds: Annotated[bool, typer.Option("--all", help="Released holds too.")] = False,
) -> None:
    """Open holds (newest first): while one is open, its entity's canonical builds publish nothing."""
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.holds import Holds

    holds = Holds(Warehouse.from_env())
    shown = holds.list() if all_holds else holds.open()
    if not shown:
        typer.echo("no open hold" if not all_holds else "no hold")
        return
    for h in shown:
        state = "open" if h.is_open else f"released by {h.released_by}: {h.release_reason}"
        typer.echo(f"{h.id}  {h.entity:<11} {h.placed_at:%Y-%m-%d %H:%M:%S}  {state}\n    {h.reason}")
        for change in h.details.get("changes", []):
            typer.echo(
                f"    {change['crm']} {change['object']}.{change['field']}: {change['changed']} of "
                f"{change['live_rows']} records, e.g. {', '.join(change['example_ids'])}"
            )


@hold_cli.command("release")
def hold_release(
    hold_id: Annotated[str, typer.Argument(metavar="ID", help="The hold (see `sync-platform hold list`).")],
    reason: Annotated[str, typer.Option(help="Why the change is right after all (kept in the audit trail).")],
) -> None:
    """Release a hold: the entity's next canonical build publishes (audited)."""
    from sync_platform.canonical.publish import release_hold
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ops.holds import UnknownHold

    try:
        hold = release_hold(Warehouse.from_env(), hold_id, reason)
    except UnknownHold as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--reason") from None
    typer.echo(
        f"hold {hold.id} released: the next {hold.entity} build publishes; run the canonical_build job"
    )


def mapping_approve(
    crm: Annotated[str, typer.Argument(help="salesforce, hubspot or dynamics.")],
    version: Annotated[int, typer.Argument(help="The mapping file's version to let go live.")],
    reason: Annotated[str, typer.Option(help="Why its changes are intended (kept in the audit trail).")],
) -> None:
    """Let a mapping version built in shadow go live on the next canonical build (audited)."""
    from sync_platform.canonical.mapping.loader import load_mappings
    from sync_platform.canonical.publish import approve_mapping
    from sync_platform.core.warehouse import Warehouse

    try:
        approval = approve_mapping(Warehouse.from_env(), load_mappings(), crm, version, reason)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="VERSION or --reason") from None
    typer.echo(
        f"approval {approval.id} by {approval.approved_by}: {crm} mapping v{version} goes live on the next "
        "canonical build; run the canonical_build job"
    )


def print_impact(mappings: dict) -> None:
    """Each entity built with ``mappings`` against the warehouse, measured, nothing written; exit 2
    when a limit would be exceeded."""
    from sync_platform.canonical.model import ENTITY_TABLES
    from sync_platform.canonical.publish import evaluate
    from sync_platform.core.config import load_sync_config
    from sync_platform.core.warehouse import Warehouse

    warehouse, quality = Warehouse.from_env(), load_sync_config().quality
    exceeded = 0
    for entity in ENTITY_TABLES:
        result = evaluate(warehouse, entity, mappings, quality, dry_run=True)
        if result.impact is None:
            typer.echo(f"impact: {entity}: not measured ({result.gate})")
            continue
        if result.impact.first_build:
            typer.echo(f"impact: {entity}: nothing published yet to compare with")
            continue
        moved = [f for f in result.impact.fields if f.config_changed or abs(f.null_rate_increase) > 1e-9]
        limits = len(result.impact.breaches)
        typer.echo(f"impact: {entity}: {len(moved)} field(s) would change, {limits} limit(s) exceeded")
        for f in moved:
            typer.echo(
                f"    {f.crm} {f.field}: {f.config_changed} of {f.compared} rows changed by the mapping "
                f"({f.config_changed_share:.1%}); null {f.null_before:.1%} -> {f.null_after:.1%}"
            )
        for breach in result.impact.breaches:
            typer.echo(f"    EXCEEDED {breach.message}", err=True)
        exceeded += len(result.impact.breaches)
    if exceeded:
        raise typer.Exit(code=2)
