"""Reading a JSONL log file whose last line was cut mid-record: in pieces (what the ingest does: polars
around the bad line) against every line through Python's json, and against the same file without the cut
line (polars' fast path); prints the seconds and the ratios.

Usage::

    python -m bench.jsonl_bad_lines [--rows 200000]

The file is the ingest bench's (``bench.perf.ingest_setup``: real demo log rows, one prompt each).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from router import readers, schemas
from bench.perf import ingest_setup


def timed(read):
    start = time.perf_counter()
    out = read()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    rows = parser.parse_args().rows
    expected = (*schemas.LOGS.required, *schemas.LOGS.optional)
    with tempfile.TemporaryDirectory(prefix="router-jsonl-") as tmp:
        work = Path(tmp)
        ingest_setup(work, rows, "jsonl")
        clean, cut = work / "logs.jsonl", work / "cut.jsonl"
        data = clean.read_bytes()
        cut.write_bytes(data + data.split(b"\n", 1)[0][:40])  # one more line, cut mid-record
        fast_s, (fast, _) = timed(lambda: readers.read_jsonl(clean, expected))
        pieces_s, (pieces, pieces_bad) = timed(lambda: readers.read_jsonl(cut, expected))
        lines_s, (lines, lines_bad) = timed(lambda: readers._read_jsonl_lines(cut, readers._text_payload(cut)))
    assert fast.height == pieces.height == lines.height == rows and pieces_bad.height == lines_bad.height == 1
    print(f"{rows:,} lines + 1 cut line: in pieces {pieces_s:.2f} s, line by line {lines_s:.2f} s "
          f"(ratio {lines_s / pieces_s:.1f}); the file without the cut line, fast path {fast_s:.2f} s "
          f"(pieces / fast {pieces_s / fast_s:.2f})")


if __name__ == "__main__":
    main()
