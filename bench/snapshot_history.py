"""What the analysts' Parquet snapshots cost as routing decisions accumulate: ``export_snapshots`` (what every
run's report step does) on a store holding ``--small`` and then ``--large`` stored decisions, as seconds and as
the ratio large / small.

Usage::

    python -m bench.snapshot_history [--small 1000000] [--large 5000000] [--repeats 2]

The decisions are synthetic rows of the real table (``bench/sql/synthetic_decisions.sql``: 11 models,
3 model versions' decisions per query, random predictions) and their queries are put in the backlog
(``synthetic_backlog.sql``), so ``latest_decisions`` and the views on it are full; all generated in DuckDB.
Each figure is the fastest of its repeats. ``routing_decisions`` is exported whole every run (the snapshot is the table), so this grows
with the history of decisions: docs/performance.md records the figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.perf import _settings
from router.snapshots import export_snapshots
from bench.store import execute, scalar
from router.storage import open_store


def export_seconds(work: Path, rows: int, repeats: int) -> tuple[float, int]:
    s = _settings(work / f"home-{rows}")
    with open_store(s) as con:
        execute(con, "synthetic_decisions", {"rows": rows})
        execute(con, "synthetic_backlog", {"first": 0, "queries": (rows + 2) // 3})
        execute(con, "checkpoint")
        stored = int(scalar(con, "decision_count"))
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            export_snapshots(con, s.home / "snapshots")
            runs.append(time.perf_counter() - start)
    return min(runs), stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--large", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="router-snapshots-") as tmp:
        work = Path(tmp)
        figures = [export_seconds(work, rows, args.repeats) for rows in (args.small, args.large)]
    print(f"export_snapshots, fastest of {args.repeats}:")
    for seconds, stored in figures:
        per_million = seconds / max(stored, 1) * 1e6
        print(f"  {stored:>12,} stored decisions  {seconds:8.4f} s  {per_million:6.3f} s per million")
    (small, n_small), (large, n_large) = figures
    print(f"  ratio large / small: {large / small:.2f} (rows {n_large / max(n_small, 1):.2f} x)")


if __name__ == "__main__":
    main()
