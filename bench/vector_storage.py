"""Disk size of embedding vectors stored as ``FLOAT[]`` lists (what ``embeddings.vector`` is) against fixed
``FLOAT[384]`` arrays, in fresh DuckDB files; prints both sizes and their ratio.

Usage::

    python -m bench.vector_storage [--rows 100000]

The vectors are seeded random unit 384-d vectors (the default encoder's dimension); their values do not
change how DuckDB lays them out.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from bench.store import execute
from router.storage import register

DIM = 384  # the fixed size in bench/sql/vector_storage_array.sql


def size_mb(folder: Path, layout: str, frame: pl.DataFrame) -> float:
    path = folder / f"{layout}.duckdb"
    con = duckdb.connect(str(path))
    try:
        register(con, "bench_vectors", frame)
        execute(con, f"vector_storage_{layout}")
    finally:
        con.close()
    return path.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    vectors = np.random.default_rng(0).standard_normal((rows, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    frame = pl.DataFrame({"id": [f"{i:032x}" for i in range(rows)],
                          "vector": pl.Series(vectors, dtype=pl.Array(pl.Float32, DIM)).cast(pl.List(pl.Float32))})
    with tempfile.TemporaryDirectory(prefix="router-vectors-") as tmp:
        as_list = size_mb(Path(tmp), "list", frame)
        as_array = size_mb(Path(tmp), "array", frame)
    print(f"{rows:,} vectors of {DIM} floats: FLOAT[] {as_list:.1f} MB, FLOAT[{DIM}] {as_array:.1f} MB, "
          f"ratio list/array {as_list / as_array:.3f}")


if __name__ == "__main__":
    main()
