"""How a night's ingest grows with the history already stored: the same-size log file ingested into a fresh
store and into a store that already holds ``--history`` log rows, as a ratio (with history / fresh store).

Usage::

    python -m bench.ingest_history [--rows 10000] [--history 3000000] [--repeats 3]

The files are the ingest bench's (``bench.perf.ingest_setup``: real demo log rows, one prompt each), each
copy with its own request ids and prompt texts, so every ingest adds new rows. The history is loaded first
(untimed, in files of at most 1M rows); then each repeat ingests a new file into a fresh store and another
into the history store, interleaved; each figure is the fastest of its repeats. The fresh store first gets a
10-row file (untimed), so that both stores have their tables and Data Docs site in place before the clock.
What grows is the commit's reading of the stored keys (``outcomes``' natural key and ``prompts``' ids, which
have no index: sql/migrations/005_bulk_keys.sql); docs/performance.md records the figures.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from router import validation
from bench.perf import _settings, ingest_setup
from router.ingest import ingest_file
from router.storage import open_store, table_counts


def copies(base: pl.DataFrame, work: Path, name: str, count: int, rows: int) -> list[Path]:
    """``count`` Parquet files of ``rows`` rows of ``base`` whose request ids and prompts are made unique."""
    out = []
    for k in range(count):
        path = work / f"{name}{k}.parquet"
        base.head(rows).with_columns(pl.col("request_id") + f"#{name}{k}",
                                     pl.col("prompt") + f" #{name}{k}").write_parquet(path)
        out.append(path)
    return out


def ingest_seconds(home: Path, path: Path, first: Path | None = None) -> float:
    """Seconds to ingest ``path`` into the store at ``home`` (after ``first``, untimed, when given)."""
    s = _settings(home)
    with open_store(s) as con:
        if first is not None:
            ingest_file(con, "logs", first, s)
        start = time.perf_counter()
        result = ingest_file(con, "logs", path, s)
        seconds = time.perf_counter() - start
    if result.rows_new != result.rows_in:
        raise RuntimeError(f"{path.name}: {result.rows_new} new rows of {result.rows_in}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=3_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chunk = min(args.history, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="router-history-") as tmp:
        work = Path(tmp)
        ingest_setup(work, max(chunk, args.rows), "parquet")
        base = pl.read_parquet(work / "logs.parquet")
        history = copies(base, work, "history", -(-args.history // chunk), chunk)
        nights = copies(base, work, "night", 2 * args.repeats, args.rows)
        firsts = copies(base, work, "first", args.repeats, 10)
        big = work / "big"
        s = _settings(big)
        validation.prepare(s.gx_docs, "logs").join()  # GX imported once, before any clock (as in the bench)
        with open_store(s) as con:
            for path in history:
                ingest_file(con, "logs", path, s)
            stored = table_counts(con)
        runs: dict[str, list[float]] = {"fresh store": [], "with history": []}
        for k in range(args.repeats):
            fresh = work / f"fresh{k}"
            runs["fresh store"].append(ingest_seconds(fresh, nights[2 * k], firsts[k]))
            shutil.rmtree(fresh)
            runs["with history"].append(ingest_seconds(big, nights[2 * k + 1]))
    best = {label: min(seconds) for label, seconds in runs.items()}
    print(f"{args.rows:,} new log rows (parquet); the history store holds {stored['outcomes']:,} outcomes and "
          f"{stored['prompts']:,} prompts; fastest of {args.repeats}:")
    for label, seconds in best.items():
        print(f"  {label:14s} {seconds:7.3f} s   runs {', '.join(f'{x:.3f}' for x in runs[label])}")
    print(f"  ratio with history / fresh store: {best['with history'] / best['fresh store']:.3f}")


if __name__ == "__main__":
    main()
