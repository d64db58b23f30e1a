"""What write-back wrote into a CRM, so the next sync recognises it as ours, not as the CRM's change.

After a write lands, the next incremental sync reads the record back with a new stamp. Without this
ledger a bulk write-back (a support-side correction of 30 % of the contacts' titles) would look like
a bad import in the CRM: a ``mass_change`` alert, and the canonical entity held. One row per record
and field written: the value as text and when. The mass-change count skips a field whose new value
is the one we wrote there within ``ECHO_DAYS``; any other value is a real change from the CRM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sync_platform.core.sql import ident, placeholders, sql
from sync_platform.core.warehouse import Warehouse

ECHO_DAYS = 7
_TABLE = ident("ops", "echoes")
_DDL = sql(
    "CREATE TABLE IF NOT EXISTS {table} (crm VARCHAR NOT NULL, crm_object VARCHAR NOT NULL, "
    "record_id VARCHAR NOT NULL, crm_field VARCHAR NOT NULL, value VARCHAR, change_id VARCHAR, "
    "written_at TIMESTAMPTZ NOT NULL)",
    table=_TABLE,
)


def as_text(value: Any) -> str | None:
    """One spelling per value across the API's JSON and the raw table's types."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


class EchoLedger:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def record(self, crm: str, written: Iterable[tuple[str, str, dict[str, Any], str]]) -> int:
        """Keep (crm object, record id, {CRM field: value}, change id) of writes the CRM accepted."""
        now = datetime.now(UTC)
        rows = [
            (crm, crm_object, record_id, crm_field, as_text(value), change_id, now)
            for crm_object, record_id, values, change_id in written
            for crm_field, value in values.items()
        ]
        if not rows:
            return 0
        self.warehouse.query(sql("CREATE SCHEMA IF NOT EXISTS {s}", s=ident("ops")))
        self.warehouse.query(_DDL)
        statement = sql(
            "INSERT INTO {table} (crm, crm_object, record_id, crm_field, value, change_id, written_at) "
            "VALUES ({values})",
            table=_TABLE,
            values=placeholders(7, self.warehouse.placeholder),
        )
        with self.warehouse.connect() as conn:
            conn.cursor().executemany(statement, rows)
        return len(rows)

    def recent(self, crm: str, crm_object: str, ids: Sequence[str]) -> dict[tuple[str, str], set[str | None]]:
        """(record id, CRM field) -> the values we wrote there within ``ECHO_DAYS``."""
        if not ids or not self.warehouse.table_exists("ops", "echoes"):
            return {}
        found: dict[tuple[str, str], set[str | None]] = {}
        since = datetime.now(UTC) - timedelta(days=ECHO_DAYS)
        for start in range(0, len(ids), 1000):
            group = list(ids[start : start + 1000])
            rows = self.warehouse.query(
                sql(
                    "SELECT record_id, crm_field, value FROM {table} WHERE crm = ? AND crm_object = ? "
                    "AND written_at >= ? AND record_id IN ({marks})",
                    table=_TABLE,
                    marks=placeholders(len(group)),
                ),
                (crm, crm_object, since, *group),
            )
            for record_id, crm_field, value in rows:
                found.setdefault((record_id, crm_field), set()).add(value)
        return found


def written_since(
    warehouse: Warehouse, crm: str, days: int = ECHO_DAYS
) -> list[tuple[str, str, str, str | None, datetime]]:
    """(crm object, record id, CRM field, value, written at) of the writes kept for ``crm``."""
    if not warehouse.table_exists("ops", "echoes"):
        return []
    since = datetime.now(UTC) - timedelta(days=days)
    return [
        (r[0], r[1], r[2], r[3], r[4])
        for r in warehouse.query(
            sql(
                "SELECT crm_object, record_id, crm_field, value, written_at FROM {table} "
                "WHERE crm = ? AND written_at >= ? ORDER BY written_at",
                table=_TABLE,
            ),
            (crm, since),
        )
    ]
