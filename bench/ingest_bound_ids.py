"""What the ingest's lower bound is made of, and whether 16-byte prompt ids would shrink it: the bound
(``bench.perf.ingest_bound``: read the log file, hash every prompt, write ``prompts`` and ``outcomes`` in one
transaction) with the store's 32-hex-character ids and with the same 128 bits as ``UHUGEINT``, and the time
DuckDB takes to hash the prompts, each as a ratio to the ingest bench's floor (DuckDB's reader into one table).

Usage::

    python -m bench.ingest_bound_ids [--rows 1000000] [--format parquet|jsonl] [--repeats 3]

The file is the ingest bench's (``bench.perf.ingest_setup``: real demo log rows, one prompt each). The
variants run interleaved, ``--repeats`` times, in this process; each figure is the fastest of its repeats.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from bench.perf import ingest_bound, ingest_floor, ingest_setup
from bench.store import execute


def query_seconds(path: Path, name: str) -> float:
    con = duckdb.connect()
    try:
        start = time.perf_counter()
        execute(con, name, {"path": str(path)})
        return time.perf_counter() - start
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    fmt, reader = args.format, "read_json" if args.format == "jsonl" else "read_parquet"
    runs: dict[str, list[float]] = {"floor": [], "bound, 32 hex chars": [], "bound, UHUGEINT": [],
                                    "read prompts": [], "read and hash prompts": []}
    with tempfile.TemporaryDirectory(prefix="router-bound-") as tmp:
        work = Path(tmp)
        ingest_setup(work, args.rows, fmt)
        path = work / f"logs.{fmt}"
        for _ in range(args.repeats):
            runs["floor"].append(ingest_floor(work, args.rows, fmt)["seconds"])
            for ids, label in (("hex", "bound, 32 hex chars"), ("uhugeint", "bound, UHUGEINT")):
                out = ingest_bound(work, args.rows, fmt, ids)
                if out["rows"] != args.rows:
                    raise RuntimeError(f"{label}: stored {out['rows']} rows of {args.rows}")
                runs[label].append(out["seconds"])
            runs["read prompts"].append(query_seconds(path, f"ingest_bound_read_{reader}"))
            runs["read and hash prompts"].append(query_seconds(path, f"ingest_bound_hash_{reader}"))
    best = {label: min(seconds) for label, seconds in runs.items()}
    floor = best["floor"]
    print(f"{args.rows:,} log rows ({fmt}), fastest of {args.repeats}:")
    for label, seconds in best.items():
        print(f"  {label:24s} {seconds:7.3f} s  ratio to the floor {seconds / floor:5.2f}")
    hashing = best["read and hash prompts"] - best["read prompts"]
    print(f"  hashing alone            {hashing:7.3f} s  ratio to the floor {hashing / floor:5.2f}")
    print(f"  UHUGEINT / 32 hex chars  {best['bound, UHUGEINT'] / best['bound, 32 hex chars']:.3f}")


if __name__ == "__main__":
    main()
