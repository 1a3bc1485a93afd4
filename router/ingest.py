"""Ingest RouterBench files, production logs and backlogs into the store.

One file = one transaction: the ingest run, its new prompts, models, outcomes/backlog rows and its
quarantine rows are committed together or not at all. A file whose bytes (sha256) were already ingested is
skipped; records whose natural key is already stored with the same values are counted as good but not
inserted again, so ingesting twice adds nothing and overlapping files add only their new rows.

Security: a ``.pkl`` file is unpickled (which runs code from the file) only when that file itself is named
on the command line, or when ``allow_pickle`` is set; pickles merely found inside a folder are skipped.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import polars_hash  # noqa: F401 - registers the plugin's expression namespace (Expr.chash)

from router.coercion import (as_float, as_text, as_timestamp, concat_issues, duplicate_issues, flagged,
                             prompt_text, unwrap_prompt)
from router.errors import RouterError
from router import schemas
from router.files import sha256_file
from router.readers import ROW, FileRejected, clip_json, data_suffix, read_any
from router.settings import Settings
from router.storage import query, register, transaction
from router.timing import Laps
from router.validation import (INDEX, CompiledCheck, ValidationReport, check_compiled, confirm_with_gx, docs_batch,
                               prepare, publish_docs)

log = logging.getLogger(__name__)

RECORD_COLUMNS = {
    "source": pl.String, "sample_key": pl.String, "model": pl.String, "prompt": pl.String, "task": pl.String,
    "quality": pl.Float64, "cost_usd": pl.Float64, "split": pl.String, "ts": pl.Datetime("us", "UTC"),
    "latency_ms": pl.Float64, "tokens_in": pl.Int64, "tokens_out": pl.Int64,
}
PRICE_COLUMNS = ("model", "effective_from", "pricing", "input_per_1k", "output_per_1k", "per_call", "currency")
BACKLOG_COLUMNS = {"query_id": pl.String, "prompt": pl.String, "task": pl.String,
                   "submitted_at": pl.Datetime("us", "UTC")}
TRAIN_FRACTION = 0.7
SPLIT_SEED = 42


class IngestError(RouterError, RuntimeError):
    """A file could not be ingested; the store is unchanged."""


@dataclass
class IngestResult:
    file: str
    kind: str
    status: str  # ingested | skipped
    run_id: str | None = None
    source_rows: int = 0
    rows_in: int = 0
    rows_ok: int = 0
    rows_new: int = 0
    rows_quarantined: int = 0
    rows_gx_validated: int | None = None  # of rows_in, the records Great Expectations itself validated
    gx_disagreements: int = 0  # (record, expectation) pairs where GX and the compiled checks differ (should be 0)
    seconds: dict[str, float] = field(default_factory=dict)  # read, validate (compiled checks), commit, docs
    gx_seconds: float | None = None  # GX's own seconds, in a background thread during validate and commit
    models: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass
class Staged:
    kind: str
    records: pl.DataFrame  # normalised records with _idx, _row and the payload columns
    issues: pl.DataFrame  # _idx, reason: problems found while coercing values
    rejects: pl.DataFrame  # rows the reader could not parse (no _idx)
    models: list[str]
    source_rows: int
    #: The record's key within a file and its name in the quarantine reason: a later copy of a key is quarantined
    #: (at commit, among the records that passed every other check, so a bad first copy costs no good one its place).
    key: tuple[tuple[str, ...], str]


# --------------------------------------------------------------------------------------------------- files
def discover(paths: list[Path], kind: str, *, allow_pickle: bool = False) -> tuple[list[Path], list[str]]:
    """Expand files and folders into the files to ingest, with notes on what was skipped.

    Files found inside a folder must resolve inside that folder (no symlink escapes) and have one of the
    kind's suffixes; ``.pkl`` files found in a folder are skipped unless ``allow_pickle``.
    """
    found: list[Path] = []
    notes: list[str] = []
    suffixes = schemas.SUFFIXES[kind]
    for given in paths:
        if not given.exists():
            raise IngestError(f"{given}: no such file or folder")
        if given.is_file():
            if data_suffix(given) not in suffixes:
                raise IngestError(f"{given}: {kind} files must be one of {', '.join(suffixes)} (optionally .gz)")
            found.append(given)
            continue
        root = given.resolve()
        # rglob does not descend into symlinked folders; a symlink (to a file or a folder) is followed only
        # when its target lies inside the folder given, so nothing outside it is ever read through a link.
        for path in sorted(p for p in given.rglob("*") if p.is_file() or p.is_symlink()):
            if path.name.startswith("."):
                continue
            real = path.resolve()
            if not real.is_relative_to(root):
                notes.append(f"skipped {path}: resolves outside {given} ({real})")
                continue
            if not real.is_file():
                what = "a folder (its files inside the folder are found directly)" if real.is_dir() else "broken"
                notes.append(f"skipped {path}: symlink is {what}")
                continue
            suffix = data_suffix(path)
            if suffix not in suffixes:
                notes.append(f"skipped {path}: not a {kind} file type")
                continue
            if suffix == ".pkl" and not allow_pickle:
                notes.append(f"skipped {path}: pickles found in folders are not unpickled (name the file, or "
                             "set ROUTER_ALLOW_PICKLE=true / --allow-pickle)")
                continue
            found.append(path)
    return found, notes


# ------------------------------------------------------------------------------------------------ staging
def split_for(file: Path, df: pl.DataFrame) -> pl.Series:
    """train/test from the file name, else a 70/30 split per eval_name with seed 42 (stored with each row)."""
    name = file.name.lower()
    if "_train" in name or name.startswith("train"):
        return pl.Series("split", ["train"] * df.height)
    if "_test" in name or name.startswith("test"):
        return pl.Series("split", ["test"] * df.height)
    split = np.full(df.height, "train", dtype=object)
    evals = df["eval_name"].fill_null("").to_numpy()
    rng = np.random.default_rng(SPLIT_SEED)
    for name_ in sorted(set(evals)):
        idx = np.flatnonzero(evals == name_)
        perm = rng.permutation(idx)
        split[perm[int(round(TRAIN_FRACTION * len(idx))):]] = "test"
    return pl.Series("split", split.tolist(), dtype=pl.String)


def _sample_key(df: pl.DataFrame) -> pl.Expr:
    """RouterBench reuses a sample_id for different prompts (arc-challenge has such pairs); the original row
    index (the unnamed first column, or the pickle's index) tells them apart: key = ``sample_id#index``."""
    index = next((c for c in schemas.ROUTERBENCH_INDEX if c in df.columns), None)
    if index is None:
        return as_text(df, "sample_id")
    return pl.concat_str([as_text(df, "sample_id"), as_text(df, index)], separator="#")


def stage_routerbench(df: pl.DataFrame, rejects: pl.DataFrame, file: Path, source: str) -> Staged:
    columns = [c for c in df.columns if c != ROW]
    models = schemas.routerbench_models(columns, str(file))
    base = df.select(
        pl.col(ROW),
        _sample_key(df).alias("sample_key"),
        prompt_text(as_text(df, "prompt").map_elements(unwrap_prompt, return_dtype=pl.String)).alias("prompt"),
        as_text(df, "eval_name").alias("task"),
    ).with_columns(split_for(file, df))
    parts = []
    for model in models:
        quality, bad_q = as_float(df, model)
        cost, bad_c = as_float(df, model + schemas.COST_SUFFIX)
        values = df.select(
            pl.lit(model).alias("model"),
            quality.alias("quality"),
            cost.alias("cost_usd"),
            bad_q.alias("_bad_quality"),
            bad_c.alias("_bad_cost"),
            as_text(df, model).alias("_raw_quality"),
            as_text(df, model + schemas.COST_SUFFIX).alias("_raw_cost"),
        )
        parts.append(pl.concat([base, values], how="horizontal"))
    records = pl.concat(parts).with_columns(pl.lit(source).alias("source"))
    records = _finish(records).with_row_index(INDEX).with_columns(pl.col(INDEX).cast(pl.Int64))
    issues = concat_issues([
        flagged(records, "_bad_quality", "score is not a number"),
        flagged(records, "_bad_cost", "cost is not a number"),
    ])
    return Staged("routerbench", records, issues, rejects, models, df.height + rejects.height,
                  (("sample_key", "model"), "(sample_id, model)"))


#: Token counts from this on (2**63) do not fit the store's BIGINT.
_INT64_LIMIT = float(2**63)


def stage_logs(df: pl.DataFrame, rejects: pl.DataFrame, file: Path) -> Staged:
    df = _only_rejects(df, rejects, schemas.LOGS)
    schemas.check_long_columns(schemas.LOGS, [c for c in df.columns if c != ROW], str(file))
    quality, bad_q = as_float(df, "quality")
    cost, bad_c = as_float(df, "cost_usd")
    latency, bad_l = as_float(df, "latency_ms")
    tok_in, bad_ti = as_float(df, "tokens_in")
    tok_out, bad_to = as_float(df, "tokens_out")
    ts, bad_ts = as_timestamp(df, "ts")
    records = df.select(
        pl.col(ROW),
        pl.lit("logs").alias("source"),
        as_text(df, "request_id").alias("sample_key"),
        as_text(df, "model").str.strip_chars().alias("model"),
        prompt_text(as_text(df, "prompt")).alias("prompt"),
        as_text(df, "task").alias("task"),
        quality.alias("quality"), cost.alias("cost_usd"), ts.alias("ts"),
        latency.alias("latency_ms"),
        tok_in.alias("tokens_in"), tok_out.alias("tokens_out"),
        pl.lit("train").alias("split"),
        bad_q.alias("_bad_quality"), bad_c.alias("_bad_cost"), bad_ts.alias("_bad_ts"),
        (bad_l | bad_ti | bad_to).alias("_bad_other"),
        as_text(df, "quality").alias("_raw_quality"), as_text(df, "cost_usd").alias("_raw_cost"),
    )
    bad_tokens = (
        (pl.col("tokens_in").is_not_null() & (pl.col("tokens_in") != pl.col("tokens_in").round()))
        | (pl.col("tokens_out").is_not_null() & (pl.col("tokens_out") != pl.col("tokens_out").round()))
    )
    # A value the store cannot hold: infinite, or a token count past Int64 (it would be stored NULL).
    out_of_range = pl.any_horizontal(pl.col("latency_ms").is_infinite(),
                                     *[pl.col(c).abs() >= _INT64_LIMIT for c in ("tokens_in", "tokens_out")])
    records = records.with_columns(bad_tokens.alias("_bad_tokens"), out_of_range.fill_null(False).alias("_bad_range"))
    records = _finish(records).with_row_index(INDEX).with_columns(pl.col(INDEX).cast(pl.Int64))
    issues = concat_issues([
        flagged(records, "_bad_quality", "quality is not a number"),
        flagged(records, "_bad_cost", "cost_usd is not a number"),
        flagged(records, "_bad_ts", "ts is not an ISO-8601 timestamp"),
        flagged(records, "_bad_other", "latency_ms/tokens_in/tokens_out is not a number"),
        flagged(records, "_bad_tokens", "tokens_in/tokens_out is not a whole number"),
        flagged(records, "_bad_range", "latency_ms/tokens_in/tokens_out is infinite or too large"),
    ])
    return Staged("logs", records, issues, rejects, [], df.height + rejects.height,
                  (("sample_key", "model"), "(request_id, model)"))


def stage_backlog(df: pl.DataFrame, rejects: pl.DataFrame, file: Path) -> Staged:
    df = _only_rejects(df, rejects, schemas.BACKLOG)
    schemas.check_long_columns(schemas.BACKLOG, [c for c in df.columns if c != ROW], str(file))
    submitted, bad_ts = as_timestamp(df, "submitted_at")
    records = df.select(
        pl.col(ROW),
        as_text(df, "query_id").alias("query_id"),
        prompt_text(as_text(df, "prompt")).alias("prompt"),
        as_text(df, "task").alias("task"),
        submitted.alias("submitted_at"),
        bad_ts.alias("_bad_ts"),
    ).with_row_index(INDEX).with_columns(pl.col(INDEX).cast(pl.Int64))
    issues = flagged(records, "_bad_ts", "submitted_at is not an ISO-8601 timestamp")
    return Staged("backlog", records, issues, rejects, [], df.height + rejects.height, (("query_id",), "query_id"))


def stage_prices(df: pl.DataFrame, rejects: pl.DataFrame, file: Path) -> Staged:
    """Price rows: ``effective_from`` a date (YYYY-MM-DD), ``pricing`` per_call (with ``per_call``) or per_token
    (with ``input_per_1k`` and ``output_per_1k``, never both kinds' fields), ``currency`` USD (or absent)."""
    df = _only_rejects(df, rejects, schemas.PRICES)
    schemas.check_long_columns(schemas.PRICES, [c for c in df.columns if c != ROW], str(file))
    values = {name: as_float(df, name) for name in ("input_per_1k", "output_per_1k", "per_call")}
    pricing = as_text(df, "pricing").str.strip_chars().str.to_lowercase()
    currency = as_text(df, "currency").str.strip_chars().str.to_uppercase()
    records = df.select(
        pl.col(ROW),
        as_text(df, "model").str.strip_chars().alias("model"),
        as_text(df, "effective_from").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("effective_from"),
        pricing.alias("pricing"),
        *[value.alias(name) for name, (value, _) in values.items()],
        pl.when(currency.is_null() | (currency == "")).then(pl.lit(schemas.CURRENCY)).otherwise(currency)
        .alias("currency"),
        pl.any_horizontal(*[bad for _, bad in values.values()]).alias("_bad_number"),
        *[as_text(df, name).alias(f"_raw_{name}") for name in PRICE_COLUMNS],
    ).with_row_index(INDEX).with_columns(pl.col(INDEX).cast(pl.Int64))
    per_token = pl.col("pricing") == "per_token"
    per_call = pl.col("pricing") == "per_call"
    token_fields = pl.col("input_per_1k").is_not_null() | pl.col("output_per_1k").is_not_null()
    records = records.with_columns(
        (pl.col("pricing").is_not_null() & ~pl.col("pricing").is_in(list(schemas.PRICINGS))).alias("_bad_pricing"),
        (per_token & (pl.col("input_per_1k").is_null() | pl.col("output_per_1k").is_null() | pl.col("per_call")
                      .is_not_null())).alias("_bad_per_token"),
        (per_call & (pl.col("per_call").is_null() | token_fields)).alias("_bad_per_call"),
        (pl.col("currency") != schemas.CURRENCY).alias("_bad_currency"),
    )
    issues = concat_issues([
        flagged(records, "_bad_number", "a price is not a number"),
        flagged(records, "_bad_pricing", "pricing is neither per_call nor per_token"),
        flagged(records, "_bad_per_token", "a per_token price needs input_per_1k and output_per_1k (and no per_call)"),
        flagged(records, "_bad_per_call", "a per_call price needs per_call (and no per-token fields)"),
        flagged(records, "_bad_currency", f"currency is not {schemas.CURRENCY}"),
    ])
    return Staged("prices", records, issues, rejects, [], df.height + rejects.height,
                  (("model", "effective_from"), "(model, effective_from)"))


def _finish(records: pl.DataFrame) -> pl.DataFrame:
    for name, dtype in RECORD_COLUMNS.items():
        if name not in records.columns:
            records = records.with_columns(pl.lit(None, dtype=dtype).alias(name))
    return records.with_columns(pl.col("tokens_in").cast(pl.Int64, strict=False),
                                pl.col("tokens_out").cast(pl.Int64, strict=False))


#: Column types a value cannot be read from: nested values, objects, and durations (not a number of anything here).
_REFUSED_TYPES = (pl.List, pl.Array, pl.Struct, pl.Object, pl.Duration)


def _check_types(df: pl.DataFrame, file: Path, kind: str) -> pl.DataFrame:
    """Columns must hold scalars (text, numbers, booleans, timestamps): a Parquet column of lists or structs
    is a schema error naming the file and columns, not a crash while coercing. RouterBench prompts stored
    as a list of strings are joined (as the repr form is, see :func:`unwrap_prompt`); response columns and
    the oracle column are ignored and not checked."""
    prompt = df.schema.get("prompt")
    if kind == "routerbench" and isinstance(prompt, (pl.List, pl.Array)) and prompt.inner == pl.String:
        df = df.with_columns(pl.col("prompt").cast(pl.List(pl.String)).list.join("\n"))
    ignored = set(schemas.ROUTERBENCH_IGNORED) - set(schemas.ROUTERBENCH_INDEX)
    bad = {name: str(dtype) for name, dtype in df.schema.items()
           if isinstance(dtype, _REFUSED_TYPES) and name not in ignored and not name.endswith(schemas.RESPONSE_SUFFIX)}
    if bad:
        raise schemas.SchemaError(f"{file}: wrong column types (expected text, numbers or timestamps): "
                                  + ", ".join(f"{name!r} is {dtype}" for name, dtype in bad.items()))
    return df


def _only_rejects(df: pl.DataFrame, rejects: pl.DataFrame, schema: schemas.LongSchema) -> pl.DataFrame:
    """A JSONL file none of whose lines could be read has no columns: give it the schema's (empty), so its
    bad lines are quarantined with their reasons instead of the file failing with 'missing columns'."""
    if rejects.height and df.height == 0 and set(df.columns) <= {ROW}:
        return pl.DataFrame(schema={ROW: pl.Int64, **{c: pl.String for c in schema.required}})
    return df


def stage(kind: str, path: Path, source: str | None = None) -> Staged:
    long = {"logs": schemas.LOGS, "backlog": schemas.BACKLOG, "prices": schemas.PRICES}.get(kind)
    df, rejects = read_any(path, (*long.required, *long.optional) if long else ())
    if df.height == 0 and rejects.height == 0:
        raise FileRejected(f"{path}: no rows")
    df = _check_types(df, path, kind)
    if kind == "routerbench":
        return stage_routerbench(df, rejects, path, source or "routerbench")
    if kind == "logs":
        return stage_logs(df, rejects, path)
    if kind == "backlog":
        return stage_backlog(df, rejects, path)
    if kind == "prices":
        return stage_prices(df, rejects, path)
    raise ValueError(f"unknown kind {kind!r}; expected one of {schemas.KINDS}")


# ------------------------------------------------------------------------------------------------- commit
def _quarantine_frame(staged: Staged, bad: pl.DataFrame) -> pl.DataFrame:
    """One quarantine row per bad record: its row, key, raw values and every reason it failed."""
    reasons = bad.group_by(INDEX).agg(pl.col("reason").unique(maintain_order=True).str.join("; "))
    rec = staged.records.filter(pl.col(INDEX).is_in(reasons[INDEX].implode())).join(reasons, on=INDEX).sort(INDEX)
    if staged.kind == "backlog":
        key = pl.col("query_id")
        raw_cols = ["query_id", "prompt", "task", "submitted_at"]
    elif staged.kind == "prices":
        # the row as the file gave it, not as coerced
        rec = rec.drop(PRICE_COLUMNS).rename({f"_raw_{name}": name for name in PRICE_COLUMNS})
        raw_cols = list(PRICE_COLUMNS)
        key = pl.concat_str([pl.col("model"), pl.col("effective_from")], separator=" / ", ignore_nulls=True)
    else:
        key = pl.concat_str([pl.col("sample_key"), pl.col("model")], separator=" / ", ignore_nulls=True)
        raw_cols = ["sample_key", "model", "task", "prompt", "_raw_quality", "_raw_cost", "ts"]
    raws = [clip_json(r) for r in rec.select(raw_cols).to_dicts()]  # bad rows only: few
    out = rec.select(pl.col(ROW).alias("row_number"), key.alias("row_key"), pl.col("reason"))
    out = out.with_columns(pl.Series("raw", raws, dtype=pl.String))
    readers = staged.rejects.select(pl.col(ROW).alias("row_number"), "row_key", "raw", "reason")
    return pl.concat([out.select("row_number", "row_key", "raw", "reason"), readers])


def prompt_ids(records: pl.DataFrame) -> pl.Series:
    """The ``prompt_id`` of every record, in ``records``' order: the first 32 hex characters of the sha256 of
    its prompt's UTF-8 text (null for a null prompt).

    Hashed in polars by the ``polars-hash`` plugin (Rust's ``sha2``, which uses the CPU's SHA instructions
    where it has them): the same digests as DuckDB's ``sha256()``, which computed them before, for a third of
    the CPU time (docs/performance.md). The ingest runs it in a thread while the batch is validated.
    """
    return records.select(pl.col("prompt").chash.sha2_256().str.slice(0, 32).alias("prompt_id")).to_series()


def first_occurrences(ids: pl.Series, hashes: pl.Series | None = None) -> pl.Series | None:
    """Mask of the first record of each id, in order (``is_first_distinct``), or None when all are distinct.

    Compared through 64-bit hashes of the ids (``hashes``, by default polars' ``hash()``), a cheaper pass than
    on the text: distinct hashes mean distinct ids; when ids repeat, each repeat must carry the same id as the
    first record with its hash, and if two different ids share a hash the exact test on the text decides.
    """
    hashes = ids.hash() if hashes is None else hashes
    if hashes.n_unique() == ids.len():
        return None
    first = hashes.is_first_distinct()
    both = pl.DataFrame([hashes.alias("hash"), ids.alias("id")])
    collided = both.filter(~first).join(both.filter(first), on="hash").filter(pl.col("id") != pl.col("id_right"))
    return ids.is_first_distinct() if collided.height else first


#: One file's transaction at a time in this process: two threads ingesting the same file (each on its own
#: connection) would each see the other's rows as not yet stored. Across processes, DuckDB's one-writer file
#: lock and the CLI's workspace lock (``router.locking``) keep writers apart.
_COMMITS = threading.Lock()


def _already_ingested(con: duckdb.DuckDBPyConnection, kind: str, path: Path, digest: str) -> IngestResult | None:
    seen = con.execute(query("ingest/find_run_by_sha"), {"sha256": digest, "kind": kind}).fetchall()
    if not seen:
        return None
    return IngestResult(str(path), kind, "skipped", run_id=seen[0][0],
                        message=f"already ingested (same sha256) as run {seen[0][0]} from {seen[0][1]}")


class _Unconfirmed(Exception):
    """Great Expectations failed records the compiled checks passed: the commit is redone with them."""

    def __init__(self, issues: pl.DataFrame) -> None:
        super().__init__("validation found more failing records")
        self.issues = issues


def commit(con: duckdb.DuckDBPyConnection, staged: Staged, path: Path, digest: str, bad: pl.DataFrame,
           started: datetime, rows_gx_validated: int | None = None,
           confirm: Callable[[], pl.DataFrame] | None = None) -> IngestResult:
    """Store ``staged`` without the ``bad`` records (quarantined with their reasons), in one transaction.

    ``confirm``, when given, is called just before the transaction commits and returns the issues the batch's
    final validation added to ``bad`` (empty if none): if it returns any, the transaction is rolled back and
    :class:`_Unconfirmed` carries them.
    """
    run_id = uuid.uuid4().hex
    now = datetime.now(UTC).replace(tzinfo=None)
    params = {"run_id": run_id, "now": now}
    good = staged.records
    prompts = staged.kind != "prices"  # every kind but prices carries prompts
    if prompts and "prompt_id" not in good.columns:
        good = good.with_columns(prompt_ids(good))
    if bad.height:
        good = good.join(bad.select(INDEX).unique(), on=INDEX, how="anti", maintain_order="left")
    keys, label = staged.key
    repeats = duplicate_issues(good, list(keys), label)  # a null key is never a repeat
    if repeats.height:
        bad = concat_issues([bad, repeats])
        good = good.join(repeats.select(INDEX), on=INDEX, how="anti", maintain_order="left")
    with _COMMITS, transaction(con):
        skipped = _already_ingested(con, staged.kind, path, digest)  # by another thread since the first check
        if skipped is not None:
            return skipped
        register(con, "staged", good)
        table = {"backlog": "backlog", "prices": "price"}.get(staged.kind, "outcome")
        con.execute(query(f"ingest/{table}_hits"))  # the one pass over the stored keys
        conflicts = con.sql(query(f"ingest/{table}_conflicts")).pl()
        if conflicts.height:
            bad = pl.concat([bad, conflicts.select(pl.col(INDEX).cast(pl.Int64), pl.col("reason"))])
            good = good.join(conflicts.select(INDEX), on=INDEX, how="anti", maintain_order="left")
            register(con, "staged", good)
        # One record per prompt: its first in the file, which names its task (in file order; a batch whose
        # prompts are all distinct is passed as it is, without copying it).
        if prompts:
            first = first_occurrences(good["prompt_id"])
            register(con, "staged_prompts", good if first is None else good.filter(first))
            con.execute(query("ingest/insert_prompts"), {"now": now, "source": staged.kind})
        if staged.kind == "prices":
            new = con.execute(query("ingest/insert_prices"), params).fetchall()[0][0]
        elif staged.kind == "backlog":
            new = con.execute(query("ingest/insert_backlog"), params).fetchall()[0][0]
        else:
            con.execute(query("ingest/insert_models"), {"now": now})
            new = con.execute(query("ingest/insert_outcomes"), params).fetchall()[0][0]
        quarantine = _quarantine_frame(staged, bad)
        register(con, "staged_quarantine", quarantine)
        con.execute(query("ingest/insert_quarantine"),
                    {**params, "kind": staged.kind, "file": str(path)})
        rows_in = staged.records.height + staged.rejects.height
        result = IngestResult(
            file=str(path), kind=staged.kind, status="ingested", run_id=run_id, source_rows=staged.source_rows,
            rows_in=rows_in, rows_ok=good.height, rows_new=int(new), rows_quarantined=quarantine.height,
            rows_gx_validated=rows_gx_validated, models=staged.models,
            reasons=dict(quarantine.group_by("reason").len().sort("len", descending=True).iter_rows()),
        )
        if result.rows_in != result.rows_ok + result.rows_quarantined:  # rolls the transaction back
            raise IngestError(f"{path}: counts do not reconcile ({rows_in} in, {result.rows_ok} ok, "
                              f"{result.rows_quarantined} quarantined); nothing stored")
        con.execute(query("ingest/insert_run"), {
            **params, "kind": staged.kind, "file": str(path), "sha256": digest, "source_rows": staged.source_rows,
            "rows_in": rows_in, "rows_ok": result.rows_ok, "rows_new": result.rows_new,
            "rows_quarantined": result.rows_quarantined, "started": started, "rows_gx_validated": rows_gx_validated,
        })
        for name in ("staged", "staged_prompts", "staged_quarantine") if prompts else ("staged", "staged_quarantine"):
            con.unregister(name)
        con.execute(query("ingest/drop_hits"))
        added = confirm() if confirm is not None else None
        if added is not None and added.height:
            raise _Unconfirmed(added)  # rolls the transaction back
    return result


def _gx_and_docs(check: CompiledCheck, docs_dir: Path | None, keep: int) -> tuple[ValidationReport, float]:
    """GX's half of the validation, then the Data Docs page (unless a docs_batch() defers it); seconds taken."""
    start = time.perf_counter()
    report = confirm_with_gx(check, docs_dir)
    publish_docs(docs_dir, keep)
    return report, time.perf_counter() - start


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def ingest_file(con: duckdb.DuckDBPyConnection, kind: str, path: Path, settings: Settings,
                source: str | None = None) -> IngestResult:
    started = datetime.now(UTC).replace(tzinfo=None)
    lap = Laps()
    before = _fingerprint(path)
    digest = sha256_file(path)
    skipped = _already_ingested(con, kind, path, digest)
    if skipped is not None:
        return skipped
    prepare(settings.gx_docs, kind)  # GX imports in the background while the file is read and staged
    try:
        staged = stage(kind, path, source)
    except (FileRejected, schemas.SchemaError) as exc:
        raise IngestError(str(exc)) from exc
    # A writer still appending (or replacing the file) changes its size or modification time.
    if _fingerprint(path) != before:
        raise IngestError(f"{path}: file changed while it was being read; nothing stored (retry when it is complete)")
    lap("read")
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest") as pool:
            ids = pool.submit(prompt_ids, staged.records) if "prompt" in staged.records.columns else None
            check = check_compiled(kind, staged.records, settings.gx_sample_rows, settings.seed)
            # GX validates its records (and renders their Data Docs page) while the batch is written; the
            # transaction commits only once GX has answered, and is redone if GX failed more records.
            gx = pool.submit(_gx_and_docs, check, settings.gx_docs, settings.gx_docs_keep)
            if ids is not None:  # the prompts were hashed meanwhile
                staged.records = staged.records.with_columns(ids.result())
            lap("validate")
            compiled_issues = check.issues()
            compiled_bad = concat_issues([staged.issues, compiled_issues])

            def confirm() -> pl.DataFrame:  # what GX failed beyond the compiled checks, once it has answered
                return gx.result()[0].issues.join(compiled_issues, on=[INDEX, "reason"], how="anti")

            try:
                result = commit(con, staged, path, digest, compiled_bad, started, check.sample.height, confirm)
            except _Unconfirmed as more:
                log.warning("%s: Great Expectations failed %d more records than the compiled checks; committing "
                            "again with them quarantined", path, more.issues[INDEX].n_unique())
                bad = concat_issues([staged.issues, gx.result()[0].issues])
                result = commit(con, staged, path, digest, bad, started, check.sample.height)
            report, gx_seconds = gx.result()
        lap("commit")
        if result.status == "skipped":
            return result
    finally:
        # this file's Data Docs page if GX's thread did not build it, unless a docs_batch() builds them at its end
        publish_docs(settings.gx_docs, settings.gx_docs_keep)
    lap("docs")
    result.gx_disagreements = report.disagreements
    result.seconds = lap.seconds
    result.gx_seconds = round(gx_seconds, 3)
    log.info("ingested %s: %d in, %d ok (%d new), %d quarantined; GX validated %d records", path, result.rows_in,
             result.rows_ok, result.rows_new, result.rows_quarantined, report.gx_rows)
    return result


def check_source(kind: str, source: str | None) -> None:
    """A source label names RouterBench rows only (``--source``, e.g. ``routerbench-5shot``), never ``logs``: the
    production logs' label, which decides which outcomes count as logged (models awaiting outcomes, drift,
    onboarding). Raises :class:`IngestError`."""
    if source is None:
        return
    if kind != "routerbench":
        raise IngestError(f"a source label applies to routerbench files only, not to {kind} files (their source "
                          f"is {kind!r})")
    if not source.strip() or source.strip() == "logs":
        raise IngestError(f"source label {source!r} is not allowed: it must be non-blank and not 'logs', the "
                          "production logs' label")


def ingest_files(con: duckdb.DuckDBPyConnection, kind: str, files: list[Path], settings: Settings,
                 source: str | None = None) -> Iterator[tuple[Path, IngestResult | IngestError]]:
    """Ingest ``files`` in order, one transaction each, and build their Data Docs once at the end (one
    :func:`~router.validation.docs_batch`; inside an outer batch, the outer one builds them).

    Yields each file with its :class:`IngestResult`, or with the :class:`IngestError` that rejected it (the
    store is unchanged by that file, and the next files go on): the caller reports either as it sees fit. A
    ``source`` :func:`check_source` refuses raises its :class:`IngestError` before any file is read.
    """
    check_source(kind, source)
    with docs_batch(settings.gx_docs, settings.gx_docs_keep):
        for path in files:
            try:
                outcome: IngestResult | IngestError = ingest_file(con, kind, path, settings, source)
            except IngestError as exc:
                outcome = exc
            yield path, outcome
