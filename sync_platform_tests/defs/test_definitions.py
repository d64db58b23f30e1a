import dagster as dg

from sync_platform.definitions import defs


def test_definitions_load_and_resolve():
    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    loaded.get_repository_def()  # resolves every asset, check, job, schedule and sensor
