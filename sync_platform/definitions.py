"""The one Dagster ``Definitions`` of the project: everything under ``defs/``, autoloaded."""

import dagster as dg

from sync_platform import defs as defs_package


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_defs(defs_root=defs_package)
