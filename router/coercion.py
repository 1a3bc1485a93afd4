"""Raw columns to the store's types: each value coerced (a number, text, a UTC timestamp, a prompt), with a
flag where a present value could not be; and the per-row issue frames (row index, reason) that the staging
of ``router.ingest`` turns into quarantine rows.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

import duckdb
import polars as pl

from router.readers import ROW
from router.storage import per_row
from router.validation import INDEX


def as_float(df: pl.DataFrame, column: str) -> tuple[pl.Expr, pl.Expr]:
    """(value as Float64 with NaN → null, flag: a present value that is not a number)."""
    if column not in df.columns:
        return pl.lit(None, dtype=pl.Float64), pl.lit(False)
    dtype = df.schema[column]
    col = pl.col(column)
    if dtype == pl.Boolean:
        value = col.cast(pl.Float64)
    elif dtype.is_numeric():
        value = col.cast(pl.Float64)
    elif dtype == pl.Null:
        return pl.lit(None, dtype=pl.Float64), pl.lit(False)
    else:
        text = col.cast(pl.String).str.strip_chars()
        text = pl.when(text.str.to_lowercase().is_in(["", "nan", "none", "null", "na"])).then(None).otherwise(text)
        text = text.replace({"True": "1", "False": "0", "true": "1", "false": "0"})
        value = text.cast(pl.Float64, strict=False)
        bad = text.is_not_null() & value.is_null()
        return value.fill_nan(None), bad
    return value.fill_nan(None), pl.lit(False)


def as_text(df: pl.DataFrame, column: str) -> pl.Expr:
    if column not in df.columns or df.schema[column] == pl.Null:
        return pl.lit(None, dtype=pl.String)
    return pl.col(column).cast(pl.String)


UTC_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
#: Rounds of the offset-aware pass at most (one per stamp shape a file mixes; see :func:`as_timestamp`).
OFFSET_ROUNDS = 8
#: What the offset-aware pass may read: an ISO-8601 date, a time to the minute at least, an optional zone.
ISO_SHAPE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)?$"
#: Naive stamps (taken as UTC), tried in this order: with seconds, without (ISO-8601 allows leaving them out, and
#: spreadsheet exports write "YYYY-MM-DD HH:MM"), a date alone.
NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def utc_stamps(text: pl.Series) -> pl.Series:
    """``text`` parsed where it is ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` with an hour of 00-23, else null
    (``sql/queries/ingest/utc_stamps.sql``).

    DuckDB's cast is cheaper than polars' format parser (docs/performance.md: the Parquet ingest's read part) and gives
    the same instant wherever it accepts a stamp of that form; what it refuses (an invalid date, second 60, ...)
    is left null here for the polars passes to decide, as before. Hour 24 is kept out by the pattern: DuckDB
    reads "24:00:00" as the next midnight, polars refuses it (tested against polars on seeded and edge stamps).
    """
    stamps = pl.DataFrame([pl.int_range(text.len(), dtype=pl.UInt32, eager=True).alias("_i"), text.alias("ts")])
    with duckdb.connect() as con:  # in memory; a cast of a stamp with "Z" does not depend on the session's zone
        parsed = per_row(con, "stamps", stamps, "ingest/utc_stamps", "_i")
    return parsed["ts"].dt.convert_time_zone("UTC").alias(text.name)


def _parse_left(value: pl.Series, text: pl.Series, present: pl.Series,
                parse: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """``value`` with ``parse`` of the texts still unparsed (present, null value) filled in."""
    retry = value.is_null() & present
    return value.scatter(retry.arg_true(), parse(text.filter(retry))) if retry.any() else value


def as_timestamp(df: pl.DataFrame, column: str) -> tuple[pl.Expr | pl.Series, pl.Expr | pl.Series]:
    """ISO-8601 with an offset or Z; naive timestamps are taken as UTC."""
    if column not in df.columns or df.schema[column] == pl.Null:
        return pl.lit(None, dtype=pl.Datetime("us", "UTC")), pl.lit(False)
    dtype = df.schema[column]
    if isinstance(dtype, pl.Datetime):
        value = pl.col(column)
        value = value.dt.replace_time_zone("UTC") if dtype.time_zone is None else value.dt.convert_time_zone("UTC")
        return value.dt.cast_time_unit("us"), pl.lit(False)
    text = df.get_column(column).cast(pl.String).str.strip_chars()
    present = text.is_not_null() & (text != "")
    # Each pass parses only what the passes before it left: UTC with a "Z" (what most loggers write), first by
    # DuckDB (up to 6 fraction digits) then by polars' fixed format (a fixed format is much cheaper than
    # offset-aware parsing), then any offset, then the naive formats. Polars infers the offset-aware pass's format
    # from the first stamp it can read, so that pass takes ISO-8601 shapes only (else "01/03/2025" would be read
    # day first or month first, whichever came first) and repeats on what is left while it parses anything: a
    # file mixing shapes (naive and with an offset, with and without seconds) loses none of them.
    value = _parse_left(utc_stamps(text), text, present, lambda rest: rest.str.to_datetime(
        UTC_FORMAT, strict=False, time_unit="us").dt.replace_time_zone("UTC"))
    for _ in range(OFFSET_ROUNDS):
        left = int((value.is_null() & present).sum())
        value = _parse_left(value, text, present, lambda rest: pl.select(pl.when(rest.str.contains(ISO_SHAPE))
                            .then(rest)).to_series().str.to_datetime(time_zone="UTC", strict=False, time_unit="us"))
        if int((value.is_null() & present).sum()) in (0, left):
            break
    value = _parse_left(value, text, present, lambda rest: pl.select(pl.coalesce(
        *[rest.str.to_datetime(fmt, strict=False, time_unit="us").dt.replace_time_zone("UTC")
          for fmt in NAIVE_FORMATS])).to_series())
    return value, present & value.is_null()


def prompt_text(expr: pl.Expr) -> pl.Expr:
    """Whitespace-only prompts become "" (caught as empty by validation)."""
    return pl.when(expr.str.strip_chars() == "").then(pl.lit("")).otherwise(expr)


_LIST_LITERAL = re.compile(r"^\s*\[\s*(['\"]).*\1\s*\]\s*$", re.S)


def unwrap_prompt(text: str | None) -> str | None:
    """RouterBench stores prompts as the repr of a list of strings ("['...']"): join the list's items."""
    if text is None or not _LIST_LITERAL.match(text):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return text


def flagged(df: pl.DataFrame, flag: str, reason: str) -> pl.DataFrame:
    """The rows whose ``flag`` column is true, as issues: (row index, ``reason``)."""
    return df.filter(pl.col(flag)).select(pl.col(INDEX), pl.lit(reason).alias("reason"))


def concat_issues(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema={INDEX: pl.Int64, "reason": pl.String})
    return pl.concat(frames)


def duplicate_issues(df: pl.DataFrame, keys: list[str], label: str) -> pl.DataFrame:
    # The usual case, all keys distinct, in one pass over 64-bit hashes: distinct hashes mean distinct keys (a
    # collision only sends the batch to the exact check below).
    if df.height < 2 or df.select(pl.struct(keys).hash().n_unique()).item() == df.height:
        return pl.DataFrame(schema={INDEX: pl.Int64, "reason": pl.String})
    first = df.group_by(keys).agg(pl.col(ROW).min().alias("_first"))
    dup = df.join(first, on=keys, nulls_equal=False).filter(pl.col(ROW) != pl.col("_first"))
    return dup.select(pl.col(INDEX), pl.format("duplicate {} within file (first at row {})", pl.lit(label),
                                               pl.col("_first")).alias("reason"))
