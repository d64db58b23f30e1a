"""``python -m sync_platform.cli``: the ``sync-platform`` command line (how benchmarks start it)."""

from sync_platform.cli import app

app()
