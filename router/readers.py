"""Reading input files into polars frames, without losing a readable row to one bad one.

Every reader returns ``(frame, rejects)``: the rows it could read, with a 1-based ``_row`` column (line
number for JSONL, data row for CSV/Parquet/pickle), and the rows it could not (``_row``, ``raw``, ``reason``),
which go to quarantine. A file that cannot be read at all raises :class:`FileRejected` naming the file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROW = "_row"
REJECT_SCHEMA = {ROW: pl.Int64, "row_key": pl.String, "raw": pl.String, "reason": pl.String}
MAX_RAW_CHARS = 20_000  # raw rows kept in quarantine are clipped to this many characters per value


class FileRejected(ValueError):
    """The whole file was refused; nothing of it was stored."""


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def data_suffix(path: Path) -> str:
    """``.csv`` for ``x.csv`` and ``x.csv.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _payload(path: Path) -> bytes | Path:
    if path.suffix.lower() == ".gz":
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as exc:
            raise FileRejected(f"{path}: not a readable gzip file ({exc})") from exc
    return path


def _text_payload(path: Path) -> bytes:
    """The file's bytes (decompressed), as UTF-8 without a byte-order mark.

    A UTF-8 BOM is dropped (else it sticks to the first column's name); a file marked UTF-16 by its BOM is
    transcoded to UTF-8. Bytes that are not valid UTF-8 are left for the readers to catch row by row.
    """
    payload = _payload(path)
    raw = payload if isinstance(payload, bytes) else path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8):]
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileRejected(f"{path}: marked UTF-16 by its byte-order mark but not valid UTF-16 ({exc})") from exc
    return raw


def clip_json(record: dict[str, Any]) -> str:
    def clip(v: Any) -> Any:
        if isinstance(v, str) and len(v) > MAX_RAW_CHARS:
            return v[:MAX_RAW_CHARS] + f"…[{len(v) - MAX_RAW_CHARS} more chars]"
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v

    return json.dumps({k: clip(v) for k, v in record.items()}, ensure_ascii=False, default=str)


def read_csv(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All columns as text (coerced later, per value); invalid UTF-8 bytes become U+FFFD and are caught by
    validation."""
    payload = _text_payload(path)
    if b"\n" not in payload and b"\r" in payload:  # classic Mac line ends: polars would read one header line
        payload = payload.replace(b"\r", b"\n")
    try:
        df = pl.read_csv(io.BytesIO(payload), infer_schema=False, encoding="utf8-lossy")
    except pl.exceptions.NoDataError as exc:
        raise FileRejected(f"{path}: empty file") from exc
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError, OSError) as exc:
        # polars appends tuning hints (schema inference, ragged lines) that do not apply here: keep the cause
        cause = str(exc).strip().split("\n\n")[0].strip()
        raise FileRejected(f"{path}: cannot parse as CSV (unbalanced quotes or a ragged row?): {cause}") from exc
    return _short_rows(payload, _numbered(df, path))


def _short_rows(payload: bytes, df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``df`` without the rows that have fewer fields than the header, and those rows as rejects (a line cut off
    by a writer that died, or a short row): polars fills their missing fields with nulls. Only a frame with a
    null in its last column can hold one, so only then are the records' fields counted (Python's csv module,
    which quotes as polars does)."""
    columns = [c for c in df.columns if c != ROW]
    if not columns or df.get_column(columns[-1]).null_count() == 0:
        return df, empty_rejects()
    csv.field_size_limit(max(csv.field_size_limit(), len(payload)))  # a prompt may be longer than its 128 KiB
    records = csv.reader(io.StringIO(payload.decode("utf-8", "replace"), newline=""))
    header = len(next(records, []))
    short: list[tuple[int, list[str]]] = []
    rows = blank_tail = 0
    for rows, fields in enumerate(records, start=1):
        blank_tail = 0 if fields else blank_tail + 1
        if len(fields) < header:
            short.append((rows, fields))
    # polars leaves out the file's last blank line: align the counts on trailing blank lines, else count nothing
    if not 0 <= rows - df.height <= blank_tail:
        return df, empty_rejects()
    short = [(row, fields) for row, fields in short if row <= df.height]
    if not short:
        return df, empty_rejects()
    rejects = pl.DataFrame([{ROW: row, "row_key": None, "raw": clip_json(dict(zip(columns, fields))),
                             "reason": f"row has {len(fields)} of the header's {header} fields (cut off?)"
                             if fields else "blank line"} for row, fields in short], schema=REJECT_SCHEMA)
    return df.filter(~pl.col(ROW).is_in(rejects[ROW].implode())), rejects


def _refuse_reserved(columns: Any, path: Path) -> None:
    """A file with a column named like the readers' row-number column is refused (it would be overwritten)."""
    if ROW in columns:
        raise FileRejected(f"{path}: column {ROW!r} is reserved for the row number; rename it")


def _numbered(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    """``df`` with its 1-based row number in :data:`ROW`."""
    _refuse_reserved(df.columns, path)
    return df.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))


def read_parquet(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    payload = _payload(path)  # x.parquet.gz is accepted by discovery: decompress it like CSV/JSONL
    try:
        df = pl.read_parquet(io.BytesIO(payload) if isinstance(payload, bytes) else payload)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FileRejected(f"{path}: cannot read as Parquet (truncated or not Parquet?): {exc}") from exc
    # Binary columns (text written without a UTF-8 annotation): decode leniently, so invalid bytes become U+FFFD
    # and are quarantined row by row like CSV's, instead of failing the cast later.
    binary = [name for name, dtype in df.schema.items() if dtype == pl.Binary]
    if binary:
        df = df.with_columns(
            pl.col(name).map_elements(lambda b: b.decode("utf-8", "replace"), return_dtype=pl.String)
            for name in binary
        )
    return _numbered(df, path), empty_rejects()


def read_pickle(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Unpickle a RouterBench pandas frame. Unpickling runs code from the file: callers decide when it is
    allowed (see ``router.ingest``)."""
    import pandas as pd

    try:
        frame = pd.read_pickle(path)  # noqa: S301 - gated by the caller
    except Exception as exc:  # noqa: BLE001 - any unpickling failure rejects the file
        raise FileRejected(f"{path}: cannot unpickle: {exc}") from exc
    if not isinstance(frame, pd.DataFrame):
        raise FileRejected(f"{path}: pickle holds a {type(frame).__name__}, not a pandas DataFrame")
    frame.columns = [str(c) for c in frame.columns]
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise FileRejected(f"{path}: column names repeated: {', '.join(map(repr, repeated))}")
    if "Unnamed: 0" not in frame.columns:  # keep the original row index: it is part of the natural key
        frame = frame.rename_axis("Unnamed: 0").reset_index()
    else:
        frame = frame.reset_index(drop=True)
    keep = [c for c in frame.columns if not c.endswith("|model_response")]
    columns = {}
    for name in keep:
        col = frame[name]
        if col.dtype == object or str(col.dtype).startswith(("str", "string")):
            columns[name] = pl.Series(name, [None if _missing(v) else str(v) for v in col], dtype=pl.String)
        else:
            columns[name] = pl.from_pandas(col).alias(name)
    df = pl.DataFrame(columns)
    return _numbered(df, path), empty_rejects()


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


#: Lines polars infers column types from when the caller names the columns it expects (see read_jsonl).
JSONL_INFER_ROWS = 10_000


def read_jsonl(path: Path, expected: tuple[str, ...] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fast path: polars' reader. If it refuses the file (a truncated or non-UTF-8 line, mixed types), the file
    is read in pieces (:func:`_read_jsonl_pieces`): polars where it accepts a piece, line by line around the bad
    lines; good lines are kept, bad lines become rejects with their line number.

    With ``expected`` column names, polars first infers the types from the first :data:`JSONL_INFER_ROWS`
    lines only (half the time of inferring from every line on large files). A value of another type further
    down makes polars refuse, and then every line is used; a key first seen after those lines would be
    dropped silently, so if any expected column is missing from the result while its quoted name occurs in
    the file, the file is read again inferring from every line.
    """
    raw = _text_payload(path)
    if not raw or raw.isspace():  # stops at the first other byte (strip() would copy the whole file)
        raise FileRejected(f"{path}: empty file")
    lines = raw.count(b"\n") + (not raw.endswith(b"\n"))
    df = _polars_ndjson(raw, lines, expected)
    if df is None:
        return _read_jsonl_pieces(path, raw, expected)
    return _numbered(df, path), empty_rejects()


def _polars_ndjson(raw: bytes, lines: int, expected: tuple[str, ...] = ()) -> pl.DataFrame | None:
    """``raw`` (``lines`` lines) read by polars as :func:`read_jsonl` describes, or None if polars refuses it,
    a line is blank (line numbers would shift) or a value is not a scalar."""
    for infer in ((JSONL_INFER_ROWS, None) if expected and lines > JSONL_INFER_ROWS else (None,)):
        try:
            df = pl.read_ndjson(io.BytesIO(raw), infer_schema_length=infer)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            if _unreadable(exc):
                return None
            continue  # a value of another type after the lines the types came from: infer from every line
        if infer is not None and any(f'"{name}"'.encode() in raw for name in expected if name not in df.columns):
            continue
        scalar = all(dtype == pl.String or dtype.is_numeric() or dtype == pl.Null or dtype == pl.Boolean
                     for dtype in df.dtypes)
        return df if scalar and df.height == lines and not _has_nul(df) else None
    return None


def _has_nul(df: pl.DataFrame) -> bool:
    """Whether a text column holds a NUL character. polars reads the escape of a lone high surrogate (``\\ud800``,
    half of a pair: no character) as NUL, so such a frame is read line by line instead, where Python's json tells
    a real ``\\u0000`` from it (:func:`_read_jsonl_lines`)."""
    text = [name for name, dtype in df.schema.items() if dtype == pl.String]
    return bool(text) and df.select(pl.any_horizontal(pl.col(text).str.contains("\x00", literal=True).any())).item()


def _unreadable(exc: Exception) -> bool:
    """polars refused bytes that are not JSON or not UTF-8: inferring types from more lines cannot help. (If
    polars words these errors otherwise, the reader only tries once more before reading in pieces.)"""
    message = str(exc)
    return "Syntax at character" in message or "valid UTF-8" in message


#: Pieces of at most this many lines are read line by line; larger ones by polars, split in two when refused.
JSONL_PIECE_LINES = 256
#: Refusals after which the whole file is read line by line (many bad lines: splitting would cost more).
JSONL_MAX_SPLITS = 64


def _read_jsonl_pieces(path: Path, raw: bytes, expected: tuple[str, ...] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A file polars refused as a whole (a truncated or non-UTF-8 line, a non-object line, a blank line, mixed
    types, a nested value): pieces polars accepts are read by polars, the rest line by line, so one bad line in
    a million does not send every line through Python. A piece polars refuses is split in two until it is
    accepted or small (:data:`JSONL_PIECE_LINES`). The result equals :func:`_read_jsonl_lines`' up to column
    types: polars' pieces keep their numbers and booleans, where the line-by-line path keeps their JSON text;
    the ingest coerces both the same way.
    """
    newlines = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == ord("\n"))
    starts = np.concatenate([[0], newlines + 1])  # line i is raw[starts[i]:ends[i]]
    ends = np.concatenate([newlines, [len(raw)]])
    n = len(starts)
    if not raw[starts[-1]:].strip():  # after the file's last newline: nothing (or blanks) to read
        n -= 1

    def piece(lo: int, hi: int) -> bytes:  # lines [lo, hi) joined by their newlines, as the file has them
        return raw[starts[lo]:ends[hi - 1]] if hi > lo else b""

    frames: list[pl.DataFrame] = []
    rejects: list[pl.DataFrame] = []
    splits = 0
    # Line ranges [lo, hi), 0-based, taken in file order. The whole file was refused already; a writer that
    # died mid-line leaves the last line bad, so all lines but the last are tried first.
    todo = [(n - 1, n), (0, n - 1)]
    while todo:
        lo, hi = todo.pop()
        if hi - lo > JSONL_PIECE_LINES and splits <= JSONL_MAX_SPLITS:
            df = _polars_ndjson(piece(lo, hi), hi - lo, expected)
            if df is not None:
                _refuse_reserved(df.columns, path)
                frames.append(df.with_columns(pl.int_range(lo + 1, hi + 1, dtype=pl.Int64).alias(ROW)))
                continue
            splits += 1
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]
            continue
        df, bad = _read_jsonl_lines(path, piece(lo, hi), first_line=lo + 1)
        frames.append(df)
        rejects.append(bad)
    frames = [f for f in frames if f.height]
    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame({ROW: pl.Series([], dtype=pl.Int64)})
    columns = [c for c in df.columns if c != ROW]
    return df.select(*columns, ROW), pl.concat([empty_rejects(), *rejects])


def _read_jsonl_lines(path: Path, raw: bytes, first_line: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every line parsed by Python's json: good lines as text columns, bad lines as rejects with their number."""
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    rejects: list[dict[str, Any]] = []
    for number, line in enumerate(raw.split(b"\n"), start=first_line):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            rejects.append({ROW: number, "row_key": None, "raw": line.decode("utf-8", "replace")[:MAX_RAW_CHARS],
                            "reason": f"invalid UTF-8 at byte {exc.start}"})
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            rejects.append({ROW: number, "row_key": None, "raw": text[:MAX_RAW_CHARS],
                            "reason": f"invalid JSON (truncated line?): {exc.msg}, column {exc.colno}"})
            continue
        if not isinstance(obj, dict):
            rejects.append({ROW: number, "row_key": None, "raw": text[:MAX_RAW_CHARS],
                            "reason": f"line is a JSON {type(obj).__name__}, not an object"})
            continue
        if b"\\u" in line and not _encodable(obj):
            rejects.append({ROW: number, "row_key": None, "raw": text[:MAX_RAW_CHARS],
                            "reason": "a \\u escape is half of a surrogate pair (no character)"})
            continue
        records.append({k: _as_text(v) for k, v in obj.items()})
        rows.append(number)
    columns: dict[str, None] = {}
    for rec in records:
        columns.update(dict.fromkeys(rec))
    _refuse_reserved(columns, path)
    df = pl.DataFrame(records, schema={c: pl.String for c in columns}) if records else pl.DataFrame()
    df = df.with_columns(pl.Series(ROW, rows, dtype=pl.Int64))
    return df, pl.DataFrame(rejects, schema=REJECT_SCHEMA)


def _encodable(obj: dict[str, Any]) -> bool:
    """Whether every key and string of a parsed line is text UTF-8 can hold (json accepts lone surrogates)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    return json.dumps(v)


def read_json(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A JSON array of objects (row = position in the array, 1-based); an element that is not an object is a
    reject. A file that is not a JSON array is refused whole."""
    raw = _text_payload(path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileRejected(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        raise FileRejected(f"{path}: expected a JSON array of objects, got a JSON {type(data).__name__}")
    lines = "\n".join(json.dumps(item) for item in data).encode("utf-8")  # ASCII: a lone surrogate stays an escape
    return _read_jsonl_lines(path, lines)


READERS = {".csv": read_csv, ".json": read_json, ".parquet": read_parquet, ".pkl": read_pickle, ".jsonl": read_jsonl, ".ndjson": read_jsonl}


def read_any(path: Path, expected: tuple[str, ...] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read ``path`` by its suffix; ``expected`` names the columns the caller knows (used by the JSONL reader)."""
    if path.stat().st_size == 0:
        raise FileRejected(f"{path}: empty file (0 bytes)")
    reader = READERS.get(data_suffix(path))
    if reader is None:
        raise FileRejected(f"{path}: unsupported file type {''.join(path.suffixes)!r}")
    if reader is read_jsonl:
        return read_jsonl(path, expected)
    return reader(path)
