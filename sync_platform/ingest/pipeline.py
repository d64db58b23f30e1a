"""The dlt pipeline each CRM loads through: one name and dataset for every kind of run.

Incremental syncs, full refreshes and by-id repairs all use it, so they share one schema and
one pipeline state (the incremental cursors), which dlt keeps in the destination.
"""

from __future__ import annotations

import dlt

from sync_platform.core.errors import CrmRequestError
from sync_platform.core.warehouse import Warehouse


def dataset(crm: str) -> str:
    return f"raw_{crm}"


def build_pipeline(crm: str, warehouse: Warehouse) -> dlt.Pipeline:
    return warehouse.pipeline(f"sync_{crm}", dataset(crm))


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
