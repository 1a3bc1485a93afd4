"""Validation of every ingested batch against its expectation suite, before it is committed.

The suites are JSON files kept in the repository (``router/suites/<kind>.json``): each expectation names a
Great Expectations (GX) expectation type, its keyword arguments and the ``reason`` a failing record is
quarantined with. Two engines run the same suite:

* **compiled** — every expectation of a type listed in :data:`COMPILED` is translated into a polars expression
  and evaluated on **every** record (vectorised; 1M records in a fraction of a second);
* **GX** — Great Expectations runs the whole suite on the batch when it has at most ``gx_sample_rows``
  records (``ROUTER_GX_SAMPLE_ROWS``, default 20,000; ``0`` = always every record), else on a sample: every
  record the compiled checks flagged (up to half the sample) and a seeded random draw of the others. GX writes
  the Data Docs and is the reference for what an expectation means: a record GX fails is quarantined even if the
  compiled check passed it, and any disagreement between the two on the records GX saw is logged and counted
  (``ValidationReport.disagreements``; the tests require zero on the whole bad-input catalog).

An expectation of a type without a compiled form, or with arguments the compiler does not know (``mostly``),
or on a column of an unexpected type, makes GX validate every record of the batch, so adding any GX
expectation to a suite stays correct (only slower). GX (1.x, pandas only) takes seconds to import: it is
imported lazily, once per process, and :func:`prepare` starts that in a background thread while the file is
read and staged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

SUITES_DIR = Path(__file__).with_name("suites")
INDEX = "_idx"
RESULTS_STORE = "router_validation_results"
RESULTS_FOLDER = "results"  # <docs>/results: the GX validation results (JSON) the Data Docs are built from
DOCS_INDEX_LIMIT = 200  # validations listed on the Data Docs index page (newest first); older pages stay on disk
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    expectations: tuple[dict[str, Any], ...]

    @property
    def columns(self) -> list[str]:
        return sorted({e["kwargs"]["column"] for e in self.expectations})


@lru_cache(maxsize=None)
def load_suite(kind: str) -> SuiteSpec:
    path = SUITES_DIR / f"{kind}.json"
    spec = json.loads(path.read_text())
    for e in spec["expectations"]:
        if not {"type", "kwargs", "reason"} <= set(e):
            raise ValueError(f"{path}: every expectation needs type, kwargs and reason: {e}")
    return SuiteSpec(spec["name"], tuple(spec["expectations"]))


# ------------------------------------------------------------------------------------------ compiled checks
def _null(col: pl.Expr, kw: dict[str, Any], dtype: pl.DataType) -> pl.Expr:
    return col.is_null()


def _bounds(value: pl.Expr, kw: dict[str, Any]) -> pl.Expr:
    """``value`` outside [min_value, max_value] (each optional; ``strict_*`` excludes the bound itself)."""
    out = pl.lit(False)
    if kw.get("min_value") is not None:
        out = out | ((value <= kw["min_value"]) if kw.get("strict_min") else (value < kw["min_value"]))
    if kw.get("max_value") is not None:
        out = out | ((value >= kw["max_value"]) if kw.get("strict_max") else (value > kw["max_value"]))
    return out


def _lengths(col: pl.Expr, kw: dict[str, Any], dtype: pl.DataType) -> pl.Expr | None:
    if dtype != pl.String:
        return None
    return col.is_not_null() & _bounds(col.str.len_chars(), kw)  # characters, like pandas' str.len()


def _between(col: pl.Expr, kw: dict[str, Any], dtype: pl.DataType) -> pl.Expr | None:
    if not dtype.is_numeric():
        return None
    return col.is_not_null() & _bounds(col, kw)  # GX skips nulls (a separate not-null expectation catches them)


def _not_match(col: pl.Expr, kw: dict[str, Any], dtype: pl.DataType) -> pl.Expr | None:
    if dtype != pl.String:
        return None
    try:  # the pattern must mean the same to polars (Rust regex) as to GX (Python re): refuse what Rust rejects
        pl.Series([""]).str.contains(kw["regex"])
    except pl.exceptions.PolarsError:
        return None
    return col.is_not_null() & col.str.contains(kw["regex"])


#: Expectation type → (keyword arguments it understands, builder of a "record fails" expression, or None when
#: the column's type does not fit; then GX checks that expectation on every record).
COMPILED: dict[str, tuple[frozenset[str], Any]] = {
    "expect_column_values_to_not_be_null": (frozenset({"column"}), _null),
    "expect_column_value_lengths_to_be_between": (
        frozenset({"column", "min_value", "max_value", "strict_min", "strict_max"}), _lengths),
    "expect_column_values_to_be_between": (
        frozenset({"column", "min_value", "max_value", "strict_min", "strict_max"}), _between),
    "expect_column_values_to_not_match_regex": (frozenset({"column", "regex"}), _not_match),
}


def compile_suite(spec: SuiteSpec, schema: pl.Schema) -> tuple[dict[int, pl.Expr], list[int]]:
    """``({position: failing-record expression}, [positions GX must check on every record])``."""
    compiled: dict[int, pl.Expr] = {}
    uncompiled: list[int] = []
    for pos, e in enumerate(spec.expectations):
        known, build = COMPILED.get(e["type"], (frozenset(), None))
        column = e["kwargs"].get("column")
        expr = None
        if build is not None and set(e["kwargs"]) <= known and column in schema:
            expr = build(pl.col(column), e["kwargs"], schema[column])
        if expr is None:
            uncompiled.append(pos)
        else:
            compiled[pos] = expr
    return compiled, uncompiled


def _run_compiled(records: pl.DataFrame, compiled: dict[int, pl.Expr]) -> pl.DataFrame:
    """(_idx, _pos) of every failing (record, expectation) pair."""
    if not compiled:
        return pl.DataFrame(schema={INDEX: pl.Int64, "_pos": pl.Int64})
    flags = records.select(pl.col(INDEX), *[expr.fill_null(False).alias(f"_f{pos}") for pos, expr in compiled.items()])
    return pl.concat([flags.filter(pl.col(f"_f{pos}")).select(pl.col(INDEX), pl.lit(pos, dtype=pl.Int64).alias("_pos"))
                      for pos in compiled])


# ---------------------------------------------------------------------------------------------------- GX
class _Validator:
    """One ephemeral GX context per process, with one batch definition and validation per suite."""

    def __init__(self, docs_dir: Path | None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.docs_site = None
        self.docs_dir = docs_dir
        self.pending: list[Any] = []  # results validated since the Data Docs were last built
        if docs_dir is not None:
            docs_dir.mkdir(parents=True, exist_ok=True)
            # Results are kept on disk (not in the ephemeral context's memory): the site is built from them, so
            # the pages of earlier runs stay listed instead of being cleaned away as orphans at the next build.
            self.context.add_store(RESULTS_STORE, {
                "class_name": "ValidationResultsStore",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs_dir / RESULTS_FOLDER)},
            })
            self.context.validation_results_store_name = RESULTS_STORE
            self.docs_site = "router_data_docs"
            from router.gx_views import INDEX_VIEW, SECTION_VIEW  # GX's views, compiling templates once

            self.context.add_data_docs_site(
                site_name=self.docs_site,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                    "site_section_builders": {section: {"view": SECTION_VIEW}
                                              for section in ("expectations", "validations", "profiling")},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                           "validation_results_limit": DOCS_INDEX_LIMIT, "view": INDEX_VIEW},
                },
            )
        self.source = self.context.data_sources.add_pandas("router_ingest")
        self.checkpoints: dict[str, Any] = {}

    def checkpoint(self, kind: str):
        if kind in self.checkpoints:
            return self.checkpoints[kind]
        from great_expectations.expectations.registry import get_expectation_impl

        spec = load_suite(kind)
        suite = self.context.suites.add(self.gx.ExpectationSuite(name=spec.name))
        for pos, e in enumerate(spec.expectations):
            impl = get_expectation_impl(e["type"])
            suite.add_expectation(impl(**e["kwargs"], meta={"reason": e["reason"], "position": pos}))
        asset = self.source.add_dataframe_asset(name=kind)
        batch = asset.add_batch_definition_whole_dataframe(f"{kind}_batch")
        vd = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(data=batch, suite=suite, name=f"{kind}_validation")
        )
        cp = self.context.checkpoints.add(
            self.gx.Checkpoint(
                name=f"{kind}_checkpoint",
                validation_definitions=[vd],
                actions=[],  # the Data Docs are built by publish_docs(), once per batch of files
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [INDEX]},
            )
        )
        self.checkpoints[kind] = cp
        return cp

    def publish(self, keep: int = 0) -> int:
        """Render the pages of the pending results (and their suites) and the index, in one build; first delete
        all but the newest ``keep`` results (0 = keep all), whose pages the build then removes as orphans."""
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        pending, self.pending = self.pending, []
        if not pending or self.docs_site is None:
            return 0
        pruned = self._prune(keep, set(pending)) if keep else 0
        suites = {ExpectationSuiteIdentifier(name=key.expectation_suite_identifier.name) for key in pending}
        try:
            self.context.build_data_docs(site_names=[self.docs_site], resource_identifiers=[*pending, *suites])
        except Exception:
            self.pending[:0] = pending  # retried at this process's next build
            raise
        if pruned:  # GX leaves the run folders of deleted results and pages
            for folder in (self.docs_dir / RESULTS_FOLDER, self.docs_dir / "validations"):
                _remove_empty_folders(folder)
        return len(pending)

    def _prune(self, keep: int, pending: set[Any]) -> int:
        """Delete the stored results beyond the newest ``keep`` (by run time), never a pending one. Listing the
        store and rendering the index are what a build costs beyond its new pages: this keeps them bounded."""
        store = self.context.stores[RESULTS_STORE]
        keys = sorted(store.list_keys(), key=lambda key: key.run_id.run_time, reverse=True)
        old = [key for key in keys[keep:] if key not in pending]
        for key in old:
            store.remove_key(key)  # and its empty run folders
        if old:
            log.info("Data Docs: deleted the %d oldest validation results (keeping %d)", len(old), keep)
        return len(old)


def _remove_empty_folders(root: Path) -> None:
    """Delete every empty folder under ``root`` (deepest first), keeping ``root``."""
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


_VALIDATORS: dict[Path | None, _Validator] = {}
_LOCK = threading.Lock()
_BATCHES = 0  # open docs_batch() blocks: while > 0, publish_docs() leaves the build to the outermost block


def _checkpoint(docs_dir: Path | None, kind: str | None):
    """The process's GX validator for ``docs_dir`` (built on first use) and ``kind``'s checkpoint."""
    with _LOCK:  # a warm-up thread may be building them: wait for it instead of building a second
        validator = _VALIDATORS.get(docs_dir)
        if validator is None:
            validator = _VALIDATORS[docs_dir] = _Validator(docs_dir)
        return validator.checkpoint(kind) if kind is not None else None


def prepare(docs_dir: Path | None, kind: str | None = None) -> threading.Thread:
    """Import GX and build its context (and ``kind``'s checkpoint) in a background thread; with Data Docs, also
    compile their page templates (:func:`router.gx_views.precompile`).

    The ingest calls this before it reads a file, so the seconds of importing GX overlap reading and staging
    (which run in polars and DuckDB, outside the GIL). :func:`validate` waits for it. A failure here is left
    for :func:`validate` to raise in the caller's thread.
    """
    def warm() -> None:
        try:
            _checkpoint(docs_dir, kind)
            if docs_dir is not None:
                from router.gx_views import precompile

                precompile()  # the Data Docs templates, once per process (router.gx_views)
        except Exception:  # noqa: BLE001 - validate() raises it again, where it can be handled
            log.debug("GX warm-up failed", exc_info=True)

    thread = threading.Thread(target=warm, name="gx-warm-up", daemon=True)
    thread.start()
    return thread


def publish_docs(docs_dir: Path | None, keep: int = 0) -> int:
    """Build the Data Docs pages of the batches validated since the last build (one build, however many
    files); a no-op inside :func:`docs_batch`, whose end builds them. Returns the number of pages rendered.
    ``keep`` > 0 keeps only that many validations (results and pages), the newest (``ROUTER_GX_DOCS_KEEP``).

    A rendering failure is logged, not raised: the pages are a by-product of the data (the ingest renders
    them while its transaction is still open); the results stay in ``<docs>/results`` and their pages are
    retried at the next build."""
    with _LOCK:
        validator = _VALIDATORS.get(docs_dir)
        if validator is None or _BATCHES:
            return 0
        try:
            return validator.publish(keep)
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("Great Expectations could not build the Data Docs in %s", docs_dir)
            return 0


@contextmanager
def docs_batch(docs_dir: Path | None, keep: int = 0) -> Iterator[None]:
    """Ingest several files, then build the Data Docs once (the index and static assets are rebuilt at each
    build: a fraction of a second, paid once per night instead of once per file); ``keep`` as in
    :func:`publish_docs`, applied by the outermost block."""
    global _BATCHES
    with _LOCK:
        _BATCHES += 1
    try:
        yield
    finally:
        with _LOCK:
            _BATCHES -= 1
        publish_docs(docs_dir, keep)


@dataclass
class ValidationReport:
    success: bool
    issues: pl.DataFrame  # _idx, reason (one row per failing record per expectation, in suite order)
    evaluated: int  # records checked by the compiled expectations (all of them)
    failed_expectations: list[str]
    gx_rows: int = 0  # records GX itself validated
    disagreements: int = 0  # (record, expectation) pairs where GX and the compiled check differ, on GX's records


def _gx_sample(records: pl.DataFrame, flagged: pl.Series, size: int, seed: int) -> pl.DataFrame:
    """Up to ``size`` records: the first flagged ones (at most half) and a seeded random draw of the rest."""
    flagged_idx = np.sort(flagged.unique().to_numpy())[: size // 2]
    idx = records[INDEX].to_numpy()
    others = np.setdiff1d(idx, flagged_idx, assume_unique=True)
    rng = np.random.default_rng(seed)
    drawn = rng.choice(others, size=min(size - flagged_idx.size, others.size), replace=False)
    chosen = np.sort(np.concatenate([flagged_idx, drawn]))
    return records.filter(pl.col(INDEX).is_in(pl.Series(chosen).implode()))


def _raised(info: dict | None) -> list[str]:
    """GX's messages when ``exception_info`` of a result says the expectation raised (empty when it did not): at
    its top level, or (GX 1.x, a metric that failed, e.g. on a column the batch lacks) under each failing metric's
    id. Each message once, in GX's order; its traceback is left out."""
    info = info or {}
    entries = [info, *(v for v in info.values() if isinstance(v, dict))]
    messages = [str(e.get("exception_message") or "no message").strip() for e in entries if e.get("raised_exception")]
    return list(dict.fromkeys(messages))


def _run_gx(kind: str, frame: pl.DataFrame, docs_dir: Path | None) -> pl.DataFrame:
    """(_idx, _pos) of every failing (record, expectation) pair according to GX."""
    checkpoint = _checkpoint(docs_dir, kind)
    result = checkpoint.run(batch_parameters={"dataframe": frame.to_pandas()})
    with _LOCK:
        validator = _VALIDATORS[docs_dir]
        if validator.docs_site is not None:  # without a site there is nothing to render
            validator.pending.extend(result.run_results)
    rows: list[tuple[int, int]] = []
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            pos = int((r.expectation_config.meta or {})["position"])
            unexpected = (r.result or {}).get("unexpected_index_list") or []
            errors = [] if unexpected else _raised(r.exception_info)
            if errors:
                column = (r.expectation_config.kwargs or {}).get("column")
                on = f" on column {column!r}" if column else ""
                raise RuntimeError(f"expectation {r.expectation_config.type}{on} could not run: "
                                   + "; ".join(errors))
            rows.extend((int(u[INDEX]) if isinstance(u, dict) else int(u), pos) for u in unexpected)
    return pl.DataFrame(rows, schema={INDEX: pl.Int64, "_pos": pl.Int64}, orient="row")


@dataclass
class CompiledCheck:
    """The first, fast half of :func:`validate`: the compiled expectations on every record, and the records GX
    will validate. :meth:`issues` is the answer if GX agrees; :func:`confirm_with_gx` runs GX and gives the
    final report, which can only add to it."""

    kind: str
    spec: SuiteSpec
    compiled: dict[int, pl.Expr]
    by_compiled: pl.DataFrame  # (_idx, _pos) failing pairs
    sample: pl.DataFrame  # the records GX validates (empty when the batch is)
    evaluated: int

    def issues(self) -> pl.DataFrame:
        """(_idx, reason) of every record the compiled checks fail."""
        return _issue_frame(self.spec, self.by_compiled.unique().sort(["_pos", INDEX]))


def _issue_frame(spec: SuiteSpec, failing: pl.DataFrame) -> pl.DataFrame:
    reasons = pl.DataFrame({"_pos": list(range(len(spec.expectations))),
                            "reason": [e["reason"] for e in spec.expectations]},
                           schema={"_pos": pl.Int64, "reason": pl.String})
    return failing.join(reasons, on="_pos", how="left", maintain_order="left").select(INDEX, "reason")


def check_compiled(kind: str, records: pl.DataFrame, gx_sample_rows: int = 20_000, seed: int = 42) -> CompiledCheck:
    """Run ``kind``'s compiled expectations on ``records`` (which must carry an ``_idx`` column) and choose
    the records GX will validate: all of them when the batch is small, ``gx_sample_rows`` is 0 or an
    expectation has no compiled form, else a sample (see the module docstring)."""
    spec = load_suite(kind)
    records = records.select([INDEX, *[c for c in spec.columns if c in records.columns]])
    compiled, uncompiled = compile_suite(spec, records.schema)
    by_compiled = _run_compiled(records, compiled)
    if uncompiled or gx_sample_rows == 0 or records.height <= gx_sample_rows:
        sample = records
    else:
        sample = _gx_sample(records, by_compiled[INDEX], gx_sample_rows, seed)
    return CompiledCheck(kind, spec, compiled, by_compiled, sample, records.height)


def confirm_with_gx(check: CompiledCheck, docs_dir: Path | None = None) -> ValidationReport:
    """The second half of :func:`validate`: GX on the chosen records; the report unites both engines."""
    spec, by_compiled, sample = check.spec, check.by_compiled, check.sample
    if sample.height == 0:
        return ValidationReport(True, pl.DataFrame(schema={INDEX: pl.Int64, "reason": pl.String}), 0, [])
    by_gx = _run_gx(check.kind, sample, docs_dir)

    # Where both engines looked (the sample, compiled expectations), they must agree.
    seen = by_compiled.filter(pl.col(INDEX).is_in(sample[INDEX].implode()))
    gx_on_compiled = by_gx.filter(pl.col("_pos").is_in(list(check.compiled)))
    differ = pl.concat([seen.join(gx_on_compiled, on=[INDEX, "_pos"], how="anti"),
                        gx_on_compiled.join(seen, on=[INDEX, "_pos"], how="anti")])
    if differ.height:
        reasons = sorted({spec.expectations[p]["reason"] for p in differ["_pos"].to_list()})
        log.warning("%s: GX and the compiled checks disagree on %d (record, expectation) pairs (%s); the records "
                    "either one fails are quarantined", check.kind, differ.height, "; ".join(reasons))
    failing = pl.concat([by_compiled, by_gx]).unique().sort(["_pos", INDEX])
    failed = [spec.expectations[p]["reason"] for p in failing["_pos"].unique().sort().to_list()]
    return ValidationReport(not failed, _issue_frame(spec, failing), check.evaluated, failed,
                            gx_rows=sample.height, disagreements=differ.height)


def validate(kind: str, records: pl.DataFrame, docs_dir: Path | None = None, gx_sample_rows: int = 20_000,
             seed: int = 42) -> ValidationReport:
    """Run ``kind``'s suite on ``records`` (which must carry an ``_idx`` column): see the module docstring."""
    return confirm_with_gx(check_compiled(kind, records, gx_sample_rows, seed), docs_dir)
