"""The dlt pipeline each CRM loads through: one name and dataset for every kind of run.

Incremental syncs, full refreshes and by-id repairs all use it, so they share one schema and
one pipeline state (the incremental cursors), which dlt keeps in the destination.
"""

from __future__ import annotations

import json
import os

import dlt

from .settings import load_settings
from .sources.errors import CrmRequestError
from .warehouse import Warehouse


def dataset(crm: str) -> str:
    return f"raw_{crm}"


# DuckDB's default cap is 80 % of RAM and it keeps what it touches, so a load's peak memory grew
# with its row count (the staging insert, then the merge's dedup window over every staged row).
# Capped, the merge spills to disk instead: on 1 M contacts it takes ~20 s longer (7 s -> 25 s),
# small next to the API time of the extraction, and the load's peak no longer depends on N.
DUCKDB_LOAD_CONFIG = {"memory_limit": "128MB"}


def apply_dlt_defaults() -> None:
    """dlt settings every sync needs; set as environment defaults, so an operator's own value wins."""
    # Arrow loads skip dlt's row normalizer, which would otherwise stamp each row with its load id;
    # the id is what makes "rows this run wrote" exact (and gives every raw row its lineage)
    os.environ.setdefault("NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID", "true")
    os.environ.setdefault("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", json.dumps(DUCKDB_LOAD_CONFIG))


def build_pipeline(crm: str, warehouse: Warehouse) -> dlt.Pipeline:
    apply_dlt_defaults()
    settings = load_settings()
    return dlt.pipeline(pipeline_name=f"sync_{crm}", destination=warehouse.destination(), dataset_name=dataset(crm),
                        pipelines_dir=str(settings.data_dir / "dlt_pipelines"))


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
