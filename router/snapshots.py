"""Parquet snapshots of the decisions and analyst views.

DuckDB lets no other process open the file while a writer holds it, not even read-only, so after every run
the pipeline exports what analysts query to ``$ROUTER_HOME/snapshots/<name>.parquet``: the nightly with its
report, every other command or flow that writes the store when it ends (:func:`refreshed`). Each file is written
to a temporary name and renamed into place: a reader sees the previous snapshot or the new one, never a torn
file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from router.storage import SQL_DIR, StoreError, execute, open_store, relation

if TYPE_CHECKING:
    from router.settings import Settings

log = logging.getLogger(__name__)

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


@contextmanager
def refreshed(settings: Settings, *, on_success: bool = True) -> Iterator[None]:
    """Export every snapshot of ``settings``' store into ``settings.snapshots`` when the block ends (a command or
    an on-demand flow that writes the store runs in one): after it returns (unless ``on_success`` is false: the
    nightly exports with its report), and after it fails too, since what it stored before failing stays (an
    ingest's earlier files, a night's steps before the failing one). After a failure the export is best effort:
    one that fails is logged and the block's own error stands. After a success, an export that finds the store held
    by another process (an analyst's session has it open) is logged as a warning and the block still succeeds: its
    work is stored, and the next run that writes the store exports it."""
    def export() -> None:
        with open_store(settings) as con:
            export_snapshots(con, settings.snapshots)

    try:
        yield
    except BaseException:
        try:
            export()
        except Exception as exc:  # noqa: BLE001 - the run's own error is the one to report
            log.warning("snapshots not exported after the failed run: %s", exc)
        raise
    if on_success:
        try:
            export()
        except StoreError as exc:
            log.warning("snapshots not exported: %s; the next run that writes the store exports them", exc)
