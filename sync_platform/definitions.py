"""The one Dagster ``Definitions`` of the project: everything under ``defs/``, autoloaded."""

import dagster as dg

from sync_platform import defs as defs_package

# Each step of a run is its own process (parallel steps, a crash kills one step). Spawned fresh,
# every one of them imported Dagster, dlt, polars, DuckDB and these definitions again: 2-3 s of CPU
# per step, most of a "Materialize all" run on two cores. A forkserver imports them once per run and
# forks each step from it; the preloaded modules open no file and start no thread.
PRELOADED = [
    "dagster",
    "dlt",
    "duckdb",
    "polars",
    "pandera.polars",
    "sync_platform.definitions",
    "sync_platform.defs.ingest.assets",
    "sync_platform.defs.canonical.assets",
    "sync_platform.defs.reconcile.assets",
    "sync_platform.defs.monitor.assets",
]

step_executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": PRELOADED}}}, name="forkserver_multiprocess"
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(dg.load_defs(defs_root=defs_package), dg.Definitions(executor=step_executor))
