"""``sync-platform history <crm> <id>``: every kept version of one raw record, what changed each time."""

from __future__ import annotations

from typing import Annotated

import typer


def personal_columns(crm: str) -> set[str]:
    """Raw columns of ``crm`` that feed personal or sensitive canonical fields (per the mappings)."""
    from sync_platform.canonical.personal import personal_columns as found

    return found(crm)


def require_key() -> None:
    """``--decrypt`` needs the field key: without it, say why and exit 1 before showing anything."""
    from sync_platform.security.encryption import EncryptionError, field_cipher

    try:
        field_cipher()
    except EncryptionError as exc:
        typer.echo(f"cannot show values in clear: {exc}", err=True)
        raise typer.Exit(code=1) from None


def _shown(column: str, value: object, personal: set[str] | None) -> object:
    """A value as printed: as is with ``--decrypt`` (``personal`` None), else masked."""
    from sync_platform.canonical.personal import shown

    return shown(column, value, personal)


def history(
    crm: Annotated[str, typer.Argument(help="salesforce, hubspot or dynamics.")],
    record_id: Annotated[str, typer.Argument(metavar="ID", help="The CRM's record id.")],
    table: Annotated[str | None, typer.Option(help="The raw table (found by id when left out).")] = None,
    decrypt: Annotated[
        bool,
        typer.Option(
            "--decrypt", help="Show personal values in clear (needs the field key; for authorized use only)."
        ),
    ] = False,
) -> None:
    """The versions of one raw record, oldest first: when each was recorded and which fields changed.

    Personal values are masked unless --decrypt (which requires the field-encryption key).
    """
    from sync_platform.core.warehouse import Warehouse
    from sync_platform.ingest.history import RECORDED_AT, VERSION_HASH, RawHistory
    from sync_platform.ingest.raw_schema import DLT_SYSTEM_COLUMNS, RAW_TABLES

    if crm not in RAW_TABLES:
        raise typer.BadParameter(f"choose from {', '.join(RAW_TABLES)}", param_hint="CRM")
    if table is not None and table not in RAW_TABLES[crm]:
        raise typer.BadParameter(f"choose from {', '.join(RAW_TABLES[crm])}", param_hint="--table")
    if decrypt:
        require_key()
    name, versions = _versions(RawHistory(Warehouse.from_env()), crm, record_id, [table] if table else None)
    personal = None if decrypt else personal_columns(crm)

    def shown(column: str, value: object) -> object:
        return _shown(column, value, personal)

    typer.echo(f"{crm} {name} {record_id}: {versions.height} version(s), oldest first")
    fields = [c for c in versions.columns if c not in DLT_SYSTEM_COLUMNS | {RECORDED_AT, VERSION_HASH}]
    previous: dict | None = None
    for row in versions.iter_rows(named=True):
        at, load = row[RECORDED_AT].isoformat(timespec="seconds"), row["_dlt_load_id"]
        if previous is None:
            typer.echo(f"- {at} first seen (load {load})")
            for column in (c for c in fields if row[c] is not None):
                typer.echo(f"    {column}: {shown(column, row[column])!r}")
        else:
            changed = [c for c in fields if row[c] != previous[c]]
            typer.echo(f"- {at} {len(changed)} field(s) changed (load {load})")
            for column in changed:
                typer.echo(
                    f"    {column}: {shown(column, previous[column])!r} -> {shown(column, row[column])!r}"
                )
        previous = row


def _versions(store, crm: str, record_id: str, tables: list[str] | None):
    """The raw table holding ``record_id`` and its versions; exits 1 when none is kept."""
    from sync_platform.ingest.raw_schema import RAW_TABLES

    for name in tables or list(RAW_TABLES[crm]):
        versions = store.versions(crm, name, record_id)
        if versions.height:
            return name, versions
    typer.echo(f"no kept version of {crm} record {record_id}", err=True)
    raise typer.Exit(code=1)
