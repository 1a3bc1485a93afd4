"""Great Expectations validation of every ingested batch, before it is committed.

The suites are JSON files kept in the repository (``router/suites/<kind>.json``): each expectation names a
GX expectation type, its keyword arguments and the ``reason`` a failing record is quarantined with. Each run
returns the failing records' indices with their reasons; the good records go on to the store. GX (1.x,
pandas only) is imported lazily: it takes seconds to import.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

SUITES_DIR = Path(__file__).with_name("suites")
INDEX = "_idx"
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


class _Validator:
    """One ephemeral GX context per process, with one batch definition and validation per suite."""

    def __init__(self, docs_dir: Path | None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.docs_site = None
        if docs_dir is not None:
            docs_dir.mkdir(parents=True, exist_ok=True)
            self.docs_site = "router_data_docs"
            self.context.add_data_docs_site(
                site_name=self.docs_site,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
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
        for e in spec.expectations:
            impl = get_expectation_impl(e["type"])
            suite.add_expectation(impl(**e["kwargs"], meta={"reason": e["reason"]}))
        asset = self.source.add_dataframe_asset(name=kind)
        batch = asset.add_batch_definition_whole_dataframe(f"{kind}_batch")
        vd = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(data=batch, suite=suite, name=f"{kind}_validation")
        )
        actions = []
        if self.docs_site:
            from great_expectations.checkpoint import UpdateDataDocsAction

            actions.append(UpdateDataDocsAction(name="docs", site_names=[self.docs_site]))
        cp = self.context.checkpoints.add(
            self.gx.Checkpoint(
                name=f"{kind}_checkpoint",
                validation_definitions=[vd],
                actions=actions,
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [INDEX]},
            )
        )
        self.checkpoints[kind] = cp
        return cp


@lru_cache(maxsize=4)
def _validator(docs_dir: Path | None) -> _Validator:
    return _Validator(docs_dir)


@dataclass
class ValidationReport:
    success: bool
    issues: pl.DataFrame  # _idx, reason (one row per failing record per expectation)
    evaluated: int
    failed_expectations: list[str]


def validate(kind: str, records: pl.DataFrame, docs_dir: Path | None = None) -> ValidationReport:
    """Run ``kind``'s suite on ``records`` (which must carry an ``_idx`` column)."""
    spec = load_suite(kind)
    empty = pl.DataFrame(schema={INDEX: pl.Int64, "reason": pl.String})
    if records.height == 0:
        return ValidationReport(True, empty, 0, [])
    frame = records.select([INDEX, *[c for c in spec.columns if c in records.columns]]).to_pandas()
    checkpoint = _validator(docs_dir).checkpoint(kind)
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    rows: list[tuple[int, str]] = []
    failed: list[str] = []
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            reason = (r.expectation_config.meta or {}).get("reason") or r.expectation_config.type
            failed.append(reason)
            unexpected = (r.result or {}).get("unexpected_index_list") or []
            if not unexpected and r.exception_info and r.exception_info.get("raised_exception"):
                raise RuntimeError(f"expectation {r.expectation_config.type} could not run: {r.exception_info}")
            rows.extend((int(u[INDEX]) if isinstance(u, dict) else int(u), reason) for u in unexpected)
    issues = pl.DataFrame(rows, schema={INDEX: pl.Int64, "reason": pl.String}, orient="row") if rows else empty
    return ValidationReport(not failed, issues, records.height, failed)
