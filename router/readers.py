"""Reading input files into polars frames, without losing a readable row to one bad one.

Every reader returns ``(frame, rejects)``: the rows it could read, with a 1-based ``_row`` column (line
number for JSONL, data row for CSV/Parquet/pickle), and the rows it could not (``_row``, ``raw``, ``reason``),
which go to quarantine. A file that cannot be read at all raises :class:`FileRejected` naming the file.

A JSON object that names a key twice is a reject, with the reason ``duplicate key "prompt"``, in JSONL and JSON
arrays alike and in nested objects too (they are kept as their JSON text): polars keeps the first value and
Python's json the last, so reading either way would drop one silently.
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


# ------------------------------------------------------------------------------------------- repeated keys
class _RepeatedKey(ValueError):
    """A JSON object names a key twice (at any depth); the message, a reject's reason, names the key."""

    def __init__(self, key: str) -> None:
        shown = key if len(key) <= 200 else key[:200] + "…"
        quoted = json.dumps(shown, ensure_ascii=False)
        if not quoted.isascii() and not _encodable_text(quoted):  # half a surrogate pair: keep its escape
            quoted = json.dumps(shown)
        super().__init__(f"duplicate key {quoted}")


def _encodable_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of :data:`_STRICT_JSON`: the object as a dict, or :class:`_RepeatedKey` on a repeat."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


#: Python's json refusing repeated keys, one decoder for every line (``json.loads(text, object_pairs_hook=...)``
#: would build one per call). The hook adds about 7 % to the parse of a log line.
_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _strict_loads(text: str, decoder: json.JSONDecoder = _STRICT_JSON) -> Any:
    """``json.loads(text)`` by ``decoder``: by default an object naming a key twice raises :class:`_RepeatedKey`."""
    if text.startswith("\ufeff"):
        return json.loads(text)  # json.loads' own error for a byte-order mark, which the decoder does not check
    return decoder.decode(text)


class _Repeats:
    """An object of a JSON array as written, repeated keys included (a dict keeps one value per key)."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def _keep_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Repeats:
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else _Repeats(pairs)


#: Python's json keeping an object that repeats a key as :class:`_Repeats` (JSON arrays: see read_json).
_KEEPING_REPEATS = json.JSONDecoder(object_pairs_hook=_keep_repeats)


def _json_line(item: Any) -> str:
    """``item`` (read by :data:`_KEEPING_REPEATS`) as one line of JSON in ASCII; an object that repeats a key, at
    any depth, is written with its repeats."""
    try:
        return json.dumps(item)
    except TypeError:  # a _Repeats inside
        return _dumps_with_repeats(item)


def _dumps_with_repeats(value: Any) -> str:
    if isinstance(value, _Repeats | dict):
        pairs = value.pairs if isinstance(value, _Repeats) else value.items()
        return "{" + ", ".join(f"{json.dumps(key)}: {_dumps_with_repeats(v)}" for key, v in pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_dumps_with_repeats, value)) + "]"
    return json.dumps(value)


_QUOTE, _COLON, _BACKSLASH, _NEWLINE = b'"'[0], b":"[0], b"\\"[0], b"\n"[0]
#: Bytes are searched this many at a time: a block's mask stays in the CPU cache (faster than one whole mask).
_BLOCK = 1 << 18


def _newlines(a: np.ndarray) -> np.ndarray:
    """Positions of the newlines in ``a`` (a file's bytes), in order."""
    found = [np.flatnonzero(a[i:i + _BLOCK] == _NEWLINE) + i for i in range(0, len(a), _BLOCK)]
    return np.concatenate(found) if found else np.empty(0, dtype=np.intp)


def _key_colons(a: np.ndarray) -> np.ndarray:
    """Positions of the colons right after a quote or a blank, in order: every key's colon (only blanks may stand
    between a key and its colon), and the odd colon inside a string (``\\":``, ``a :``)."""
    found = [np.empty(0, dtype=np.intp)]
    for i in range(1, len(a), _BLOCK):
        j = min(i + _BLOCK, len(a))
        mark = np.subtract(a[i - 1:j - 1], 9, dtype=np.uint8) <= _QUOTE - 9  # tab to quote: blanks, quote, '!'...
        mark &= a[i:j] == _COLON
        found.append(np.flatnonzero(mark) + i)
    return np.concatenate(found)


def _skip_blanks(a: np.ndarray, at: np.ndarray, step: int) -> np.ndarray:
    """Each position of ``at`` moved by ``step`` (1 or -1) until it is on a byte that is not a blank."""
    at = at.copy()
    active = np.arange(at.size)
    while active.size:
        byte = a[at[active]]
        nxt = at[active] + step
        move = ((byte == 32) | (byte == 9) | (byte == 13)) & (nxt >= 0) & (nxt < len(a))
        active = active[move]
        at[active] += step
    return at


def _backslashes_before(a: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """How many backslashes stand right before each position of ``a``: an odd number escapes the byte there."""
    run = np.zeros(positions.size, dtype=np.int64)
    active, at = np.arange(positions.size), positions - 1
    while active.size:
        inside = at >= 0
        active, at = active[inside], at[inside]
        hit = a[at] == _BACKSLASH
        active, at = active[hit], at[hit] - 1
        run[active] += 1
    return run


def _keys_ending_at(a: np.ndarray, close: np.ndarray, names: list[str]) -> np.ndarray:
    """For bytes of ``a`` that stand before a colon (blanks aside): the index in ``names`` of the key spelled
    plainly (``"name"``, nothing escaped) that ends there; -1 for a key spelled or named otherwise; -2 where no key
    ends (not a quote, or an escaped one: inside a string).

    The bytes before each key are compared 8 at a time, as little-endian integers read at any offset."""
    column = np.full(close.size, -1)
    is_quote = a[close] == _QUOTE
    run = _backslashes_before(a, close)
    column[~is_quote | (run % 2 == 1)] = -2
    plain = np.flatnonzero(is_quote & (run == 0) & (close >= 2))
    ends = close[plain]
    last = a[ends - 1]  # the name's last byte
    wide = np.ndarray((max(len(a) - 7, 0),), dtype="<u8", buffer=a, strides=(1,))  # wide[i]: the bytes i to i + 7
    for j, name in enumerate(names):
        spelled = b'"' + name.encode("utf-8")  # the key's opening quote and name: what stands before its close
        if b'"' in spelled[1:] or b"\\" in spelled or any(byte < 0x20 for byte in spelled):
            continue  # a name JSON must escape is never spelled plainly
        at = np.flatnonzero(last == spelled[-1])
        at = at[ends[at] >= len(spelled) + 1]  # the byte before the opening quote is there (no key starts a file)
        far = ends[at] >= 8 * -(-len(spelled) // 8)  # the words before the closing quote are all there
        match, near = at[far], at[~far]
        for k in range(-(-len(spelled) // 8)):
            part = spelled[max(0, len(spelled) - 8 * (k + 1)):len(spelled) - 8 * k]
            pad = b"\0" * (8 - len(part))
            mask, expected = (np.uint64(int.from_bytes(pad + fill, "little"))
                              for fill in (b"\xff" * len(part), part))
            match = match[(wide[ends[match] - 8 * (k + 1)] & mask) == expected]
        if near.size:  # keys in the first bytes: byte by byte
            written = np.lib.stride_tricks.sliding_window_view(a, len(spelled))[ends[near] - len(spelled)]
            near = near[(written == np.frombuffer(spelled, dtype=np.uint8)).all(axis=1)]
        at = np.concatenate((match, near))
        at = at[a[ends[at] - len(spelled) - 1] != _BACKSLASH]  # an unescaped quote opens the key
        column[plain[at]] = j
    return column


def _lines_that_may_repeat_a_key(raw: bytes, df: pl.DataFrame, newlines: np.ndarray | None = None) -> np.ndarray:
    """0-based numbers of the lines of ``raw`` that may name a key twice, where ``df`` is polars' reading of ``raw``
    (a row per line, scalar values; a ``_row`` column is ignored) and ``newlines`` the positions of its newlines if
    known. Every other line names each key once at most. Decided from the bytes, without parsing a line:

    * Each key has a colon after a quote or a blank (:func:`_key_colons`) and each non-null value polars read needs
      a key of its own, so a file with as many such colons as non-null values repeats no key.
    * Otherwise each colon followed by ``null`` is set aside, and on each line the other colons are counted against
      the non-null values: a line with more (a key repeated or outside the columns read, a ``\\":`` inside a
      string) has each of its keys matched to the column whose plain spelling (``"name"``) ends before the colon,
      and may repeat a key if a column is matched twice or a key is not spelled plainly. A line with no more may
      only write a key twice with a null, so only its null keys are matched: to a column matched twice, or read as
      non-null on that line. Keys outside the columns are named from a few of them (:func:`_names_outside`).
    """
    names = [name for name in df.columns if name != ROW]
    none = np.empty(0, dtype=np.int64)
    if not names or df.height == 0:
        return none
    a = np.frombuffer(raw, dtype=np.uint8)
    colons = _key_colons(a)
    columns = [df.get_column(name) for name in names]  # by name: pl.col would take "^...$" for a pattern
    values = df.height * len(names) - sum(column.null_count() for column in columns)
    if colons.size <= values:
        return none
    after = a[np.minimum(colons + 1, len(a) - 1)]
    nulls = np.flatnonzero((after == b"n"[0]) | (after == 32) | (after == 9) | (after == 13))
    value = _skip_blanks(a, colons[nulls] + 1, 1)
    for k, byte in enumerate(b"null"):
        keep = value + k < len(a)
        nulls, value = nulls[keep], value[keep]
        keep = a[value + k] == byte
        nulls, value = nulls[keep], value[keep]
    null = np.zeros(colons.size, dtype=bool)
    null[nulls] = True
    read = np.column_stack([column.is_not_null().to_numpy() for column in columns])  # [line, column]
    bounds = (_newlines(a) if newlines is None else newlines)[: df.height - 1]  # line i ends at bounds[i]
    if colons.size - nulls.size <= values:  # on every line, as many colons besides the nulls' as values
        look = nulls
        line = np.searchsorted(bounds, colons[look])
        whole = np.zeros(look.size, dtype=bool)
    else:
        line = np.searchsorted(bounds, colons)
        over = (np.bincount(line, minlength=df.height) - np.bincount(line[null], minlength=df.height)
                > read.sum(axis=1))
        look = np.flatnonzero(over[line] | null)
        line, whole = line[look], over[line[look]]
    close = _skip_blanks(a, colons[look] - 1, -1)
    column = _keys_ending_at(a, close, names)
    keys = names + _names_outside(raw, a, close, column, len(names))
    known = column >= 0
    pairs, times = np.unique(line[known] * len(keys) + column[known], return_counts=True)
    written_twice = pairs[times > 1] // len(keys)
    # A null key on a line whose other keys were each read once: it repeats one if that one was read (a key
    # outside the columns is on such a line only with nulls: a value would be one more than the values read).
    null_key = known & ~whole & (column < len(names))
    also_read = line[null_key][read[line[null_key], column[null_key]]]
    return np.union1d(np.union1d(line[column == -1], written_twice), also_read)


#: Keys outside the columns read are named from this many of them at a time, in up to this many rounds, while
#: more than _FEW_UNKNOWN are left (see _names_outside).
_NAME_SAMPLE, _NAME_ROUNDS, _FEW_UNKNOWN = 32, 8, 256


def _names_outside(raw: bytes, a: np.ndarray, close: np.ndarray, column: np.ndarray, first: int) -> list[str]:
    """Names of keys that :func:`_keys_ending_at` found outside the columns (``column`` -1), read off a few of them
    in each round; ``column`` is updated in place with their indices, from ``first`` on. polars drops a key first
    seen after the lines it typed the file from (:data:`JSONL_INFER_ROWS`): named this way, the lines that carry it
    are still matched from their bytes instead of each being parsed again."""
    learned: list[str] = []
    for _ in range(_NAME_ROUNDS):
        unknown = np.flatnonzero(column == -1)
        if unknown.size <= _FEW_UNKNOWN:
            break
        names = set()
        for end in close[unknown[:: max(1, unknown.size // _NAME_SAMPLE)]].tolist():
            start = raw.rfind(b'"', 0, end)
            if start > 0 and raw[start - 1] != _BACKSLASH:
                names.add(raw[start + 1:end].decode("utf-8", "replace"))
        names -= set(learned)
        if not names:
            break
        found = _keys_ending_at(a, close[unknown], sorted(names))
        column[unknown[found >= 0]] = found[found >= 0] + first + len(learned)
        learned += sorted(names)
    return learned


def _without_repeated_keys(raw: bytes, df: pl.DataFrame, first_line: int,
                           newlines: np.ndarray | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``df``, polars' reading of ``raw`` numbered in ``_row`` from ``first_line``, without the lines that name a
    key twice, and those lines as rejects. Only the lines :func:`_lines_that_may_repeat_a_key` cannot rule out are
    parsed again, by Python's json."""
    lines = _lines_that_may_repeat_a_key(raw, df, newlines)
    if not lines.size:
        return df, empty_rejects()
    newlines = _newlines(np.frombuffer(raw, dtype=np.uint8)) if newlines is None else newlines
    starts = np.concatenate(([0], newlines + 1))
    stops = np.concatenate((newlines, [len(raw)]))
    rejects = []
    for i in lines.tolist():
        try:
            text = raw[starts[i]:stops[i]].decode("utf-8")
            _strict_loads(text)
        except _RepeatedKey as exc:
            rejects.append({ROW: first_line + i, "row_key": None, "raw": text[:MAX_RAW_CHARS], "reason": str(exc)})
        except ValueError:  # polars read the line: what else Python's json finds in it is not this check's business
            continue
    bad = pl.DataFrame(rejects, schema=REJECT_SCHEMA)
    return df.filter(~pl.col(ROW).is_in(bad[ROW].implode())), bad


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
    newlines = _newlines(np.frombuffer(raw, dtype=np.uint8))
    df = _polars_ndjson(raw, len(newlines) + (not raw.endswith(b"\n")), expected)
    if df is None:
        return _read_jsonl_pieces(path, raw, expected)
    return _without_repeated_keys(raw, _numbered(df, path), first_line=1, newlines=newlines)


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
    newlines = _newlines(np.frombuffer(raw, dtype=np.uint8))
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
                df = df.with_columns(pl.int_range(lo + 1, hi + 1, dtype=pl.Int64).alias(ROW))
                df, bad = _without_repeated_keys(piece(lo, hi), df, lo + 1, newlines[lo:hi - 1] - starts[lo])
                frames.append(df)
                rejects.append(bad)
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
            obj = _strict_loads(text)
        except _RepeatedKey as exc:
            rejects.append({ROW: number, "row_key": None, "raw": text[:MAX_RAW_CHARS], "reason": str(exc)})
            continue
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
        data = _strict_loads(raw.decode("utf-8"), _KEEPING_REPEATS)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileRejected(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        got = "dict" if isinstance(data, _Repeats) else type(data).__name__
        raise FileRejected(f"{path}: expected a JSON array of objects, got a JSON {got}")
    # A line per element (ASCII: a lone surrogate stays an escape), an object's repeated keys written as read, so
    # the line reader quarantines it like a JSONL line that repeats a key.
    lines = "\n".join(map(_json_line, data)).encode("utf-8")
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
