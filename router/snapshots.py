"""Parquet snapshots of the decisions and analyst views.

DuckDB lets no other process open the file while a writer holds it, not even read-only, so after every run
the pipeline exports what analysts query to ``$ROUTER_HOME/snapshots/<name>.parquet``. Each file is written
to a temporary name and renamed into place: a reader sees the previous snapshot or the new one, never a torn
file.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from router.storage import SQL_DIR, execute, relation

SNAPSHOTS = tuple(sorted(p.stem for p in (SQL_DIR / "queries" / "snapshots").glob("*.sql")))


def export_snapshots(con: duckdb.DuckDBPyConnection, out_dir: Path) -> dict[str, Path]:
    """Write every snapshot under ``out_dir``. ``latest_decisions``, which four of them read, is computed once
    for the export (``sql/queries/snapshot_run/hold_latest.sql``), not once per snapshot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    execute(con, "snapshot_run/hold_latest")
    try:
        for name in SNAPSHOTS:
            final = out_dir / f"{name}.parquet"
            tmp = out_dir / f".{name}.parquet.tmp"
            relation(con, f"snapshots/{name}").write_parquet(str(tmp))
            os.replace(tmp, final)
            written[name] = final
    finally:
        execute(con, "snapshot_run/release_latest")
    return written
