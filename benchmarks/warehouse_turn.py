"""What waiting for the DuckDB warehouse's turn costs: a connection with and without the turn.

Every platform connection to the embedded warehouse takes the turn (a lock file beside the
database) before opening DuckDB; this prints the time per connect + query on both paths, measured
in the same run, and their ratio. Run: ``.venv/bin/python benchmarks/warehouse_turn.py``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import duckdb
from _common import timed

from sync_platform.core.warehouse import DUCKDB, Warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300, help="connections per timed run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        warehouse = Warehouse(DUCKDB, path=Path(directory) / "warehouse.duckdb")
        warehouse.query("CREATE TABLE t AS SELECT range AS x FROM range(1000)")

        def plain() -> None:
            for _ in range(args.connections):
                conn = duckdb.connect(str(warehouse.path))
                conn.execute("SELECT count(*) FROM t").fetchall()
                conn.close()

        def in_turn() -> None:
            for _ in range(args.connections):
                warehouse.query("SELECT count(*) FROM t")

        baseline, _ = timed(plain)
        turned, _ = timed(in_turn)
    n = args.connections
    print(f"{'path':<28} {'ms per connection':>18} {'best ms':>8}")
    for name, t in (("DuckDB connect (baseline)", baseline), ("Warehouse.query in its turn", turned)):
        print(f"{name:<28} {1e3 * t['seconds'] / n:>18.2f} {1e3 * t['best'] / n:>8.2f}")
    print(f"ratio: {turned['seconds'] / baseline['seconds']:.3f}x the baseline")


if __name__ == "__main__":
    main()
