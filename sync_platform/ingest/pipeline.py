"""The dlt pipeline each CRM loads through: one name and dataset for every kind of run.

Incremental syncs, full refreshes and by-id repairs all use it, so they share one schema and
one pipeline state (the incremental cursors), which dlt keeps in the destination.
"""

from __future__ import annotations

from collections.abc import Sequence

import dlt
from dlt.pipeline.exceptions import PipelineNeverRan
from dlt.pipeline.helpers import pipeline_drop

from sync_platform.core.errors import CrmRequestError
from sync_platform.core.warehouse import Warehouse


def dataset(crm: str) -> str:
    return f"raw_{crm}"


def build_pipeline(crm: str, warehouse: Warehouse) -> dlt.Pipeline:
    return warehouse.pipeline(f"sync_{crm}", dataset(crm))


def described_pipeline(crm: str, warehouse: Warehouse) -> dlt.Pipeline:
    """The same pipeline, for the raw assets' specs only: built without touching the data dir."""
    return warehouse.described_pipeline(f"sync_{crm}", dataset(crm))


def reset_cursors(pipeline: dlt.Pipeline, tables: Sequence[str]) -> list[str]:
    """Forget the saved cursors (incremental state, delta tokens) of ``tables`` only, in the
    destination, so the next run re-reads them whole; the tables and their rows stay.

    A full refresh used dlt's ``refresh="drop_sources"``, which drops every table and cursor of the
    source, selected or not, and with them the soft-delete history the CRM no longer returns
    (Salesforce's emptied recycle bin, HubSpot's purged archives, every Dynamics tombstone).
    Merge on the record id makes the re-read idempotent. Returns the tables whose cursor was reset.
    """
    pipeline.sync_destination()  # the state lives in the destination: start from what it holds
    try:
        drop = pipeline_drop(pipeline, resources=list(tables), state_only=True)
    except PipelineNeverRan:
        return []  # nothing saved yet: the run reads everything anyway
    reset = sorted(drop.info["resource_states"])
    if reset:
        drop()
    return reset


def crm_error(exc: BaseException) -> CrmRequestError | None:
    """dlt wraps extraction errors (PipelineStepFailed → ResourceExtractionError): find ours."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, CrmRequestError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
