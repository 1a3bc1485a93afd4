"""What a UNIQUE index on a natural key would cost the bulk ingest: ``--rows`` outcome rows inserted into the
store's ``outcomes`` table (real schema, ``sql/migrations``) with and without a unique index on
``(source, sample_key, model)``, then ``--increment`` more onto them (a night onto its history), each insert
followed by a CHECKPOINT (the index is written there too). Fastest of ``--repeats`` per figure.

Usage::

    python bench/unique_keys.py [--rows 1000000] [--increment 100000] [--repeats 2]

docs/reliability.md ("Unique under concurrent writers") records the figures and why the store keeps no such
index: the workspace lock and the ingest's one-transaction-at-a-time keep the keys unique instead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from router.settings import Settings
from router.storage import connect

INDEX = "CREATE UNIQUE INDEX outcomes_key ON outcomes (source, sample_key, model)"
INSERT = """INSERT INTO outcomes (source, sample_key, model, prompt_id, quality, cost_usd, split, ingest_run_id,
                                  ingested_at)
SELECT 'logs', 'req-' || i::VARCHAR, 'm' || (i % 9)::VARCHAR, md5(i::VARCHAR)[:32], 0.5, 0.001, 'train', 'r',
       TIMESTAMP '2026-01-01' FROM range($lo, $hi) t(i)"""


def once(folder: Path, index: bool, rows: int, increment: int) -> tuple[float, float]:
    con = connect(Settings(home=folder))
    try:
        if index:
            con.execute(INDEX)
        laps = []
        for lo, hi in ((0, rows), (rows, rows + increment)):
            start = time.perf_counter()
            con.execute(INSERT, {"lo": lo, "hi": hi})
            con.execute("CHECKPOINT")
            laps.append(time.perf_counter() - start)
        return laps[0], laps[1]
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--increment", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    best: dict[bool, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="unique-keys-") as tmp:
        for k in range(args.repeats):
            for index in (False, True):  # interleaved, so a busy machine slows both alike
                laps = once(Path(tmp) / f"{int(index)}-{k}", index, args.rows, args.increment)
                best[index] = [min(a, b) for a, b in zip(best.get(index, laps), laps, strict=True)]
    for index, (first, more) in best.items():
        print(f"unique index {'yes' if index else 'no ':3}  {args.rows:>9,} rows into an empty table {first:6.2f} s"
              f"   {args.increment:>8,} more onto them {more:6.2f} s")
    print(f"index / no index: {best[True][0] / best[False][0]:.2f}x (bulk load), "
          f"{best[True][1] / best[False][1]:.2f}x (increment)")


if __name__ == "__main__":
    main()
