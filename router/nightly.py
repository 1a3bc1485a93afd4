"""The nightly pipeline's steps, as plain functions (the Prefect flows in ``flows/`` only orchestrate them).

ingest → validate → embed → train → register and promote → route backlog → report. Each step opens the store,
does its work in transactions and closes it, so a crash leaves no half-written step behind and a re-run
picks up where it stopped: ingest skips files already stored, embedding skips cached prompts, training is
skipped when its inputs (``data_key``) have not changed, routing skips queries the champion already decided.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router import __version__
from router.settings import PROJECT_ROOT, Settings
from router.storage import execute, open_store

log = logging.getLogger(__name__)
LANDING_KINDS = ("routerbench", "logs", "backlog")


# ------------------------------------------------------------------------------------------------- ingest
@dataclass
class IngestSummary:
    files: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_new(self) -> int:
        return sum(f["rows_new"] for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f["rows_quarantined"] for f in self.files)


def stage_demo_data(settings: Settings) -> list[Path]:
    """Copy the shipped RouterBench subset and the demo backlog/logs into the landing folders."""
    data = PROJECT_ROOT / "data"
    plan = {
        "routerbench": sorted((data / "routerbench_subset").glob("*.csv")),
        "logs": [data / "demo" / "logs.jsonl"],
        "backlog": [data / "demo" / "backlog.jsonl"],
    }
    copied = []
    for kind, files in plan.items():
        target = settings.landing(kind)
        target.mkdir(parents=True, exist_ok=True)
        for src in files:
            dst = target / src.name
            if not dst.exists():
                shutil.copy2(src, dst)
                copied.append(dst)
    return copied


def ingest_landing(settings: Settings) -> IngestSummary:
    """Ingest every new file in the landing folders (already-ingested files are skipped by sha256)."""
    from router.ingest import IngestError, discover, ingest_file

    summary = IngestSummary()
    with open_store(settings) as con:
        for kind in LANDING_KINDS:
            folder = settings.landing(kind)
            if not folder.is_dir():
                continue
            files, notes = discover([folder], kind, allow_pickle=settings.allow_pickle)
            summary.notes.extend(notes)
            for path in files:
                try:
                    result = ingest_file(con, kind, path, settings)
                except IngestError as exc:
                    log.error("rejected %s", exc)
                    summary.rejected.append(str(exc))
                    continue
                summary.files.append(asdict(result))
    return summary


# ----------------------------------------------------------------------------------------------- validate
@dataclass
class ValidationSummary:
    ok: bool
    quarantine_by_reason: dict[str, int]
    problems: list[str]


def check_ingest(summary: IngestSummary, max_quarantine_fraction: float = 0.5) -> ValidationSummary:
    """A night's ingest fails validation when a file was rejected or most of a file was quarantined
    (usually an upstream format change worth a human look); the good rows are stored either way."""
    reasons: dict[str, int] = {}
    problems = list(summary.rejected)
    for f in summary.files:
        for reason, count in f["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
        if f["rows_in"] and f["rows_quarantined"] / f["rows_in"] > max_quarantine_fraction:
            problems.append(f"{f['file']}: {f['rows_quarantined']} of {f['rows_in']} records quarantined")
    return ValidationSummary(not problems, reasons, problems)


# -------------------------------------------------------------------------------------------------- embed
def embed(settings: Settings) -> dict[str, Any]:
    from router.embeddings import embed_missing

    with open_store(settings) as con:
        result = embed_missing(con, settings)
    return {**asdict(result), "per_second": result.per_second}


# -------------------------------------------------------------------------------------------------- train
def data_key(settings: Settings, ingest_runs: list[str]) -> str:
    """Identity of a training run's inputs: the ingest runs, encoder, seed and the routers' code."""
    code = hashlib.sha256()
    for path in sorted((PROJECT_ROOT / "router" / "routers").glob("*.py")):
        code.update(path.read_bytes())
    payload = {"runs": sorted(ingest_runs), "encoder": settings.encoder, "seed": settings.seed,
               "version": __version__, "code": code.hexdigest()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class TrainStep:
    skipped: bool
    data_key: str
    run: Any = None  # router.pipeline.TrainRun when trained
    previous: dict[str, Any] | None = None  # the earlier training run with the same data_key


def train(settings: Settings) -> TrainStep:
    from router.dataset import snapshot
    from router.pipeline import train_and_evaluate

    with open_store(settings) as con:
        key = data_key(settings, snapshot(con).ingest_runs)
        previous = execute(con, "nightly/training_run_by_key", {"data_key": key})
        if previous:
            cols = ("run_id", "model_version", "attention_aiq", "best_baseline", "baseline_aiq", "report_dir")
            log.info("training inputs unchanged (data_key %s): skipping training", key)
            return TrainStep(True, key, previous=dict(zip(cols, previous[0], strict=True)))
        run = train_and_evaluate(con, settings, dataset=f"store {settings.database.name}")
    return TrainStep(False, key, run=run)


# --------------------------------------------------------------------------------------------- register
@dataclass
class PromotionStep:
    skipped: bool
    version: int | None = None
    decision: dict[str, Any] | None = None
    mlflow_run_id: str | None = None


def register_and_promote(settings: Settings, step: TrainStep, flow_run_id: str | None = None) -> PromotionStep:
    """Log the training run, register the attention router as ``challenger``, gate it against the champion
    (re-evaluated now, on the same test rows), and record the decision in the store."""
    from router import registry
    from router.pipeline import ATTENTION

    if step.skipped:
        return PromotionStep(True, version=(step.previous or {}).get("model_version"))
    run = step.run
    baseline_name, baseline_aiq = run.best_baseline()
    mlflow_run_id = registry.log_training_run(
        settings, run.routers[ATTENTION], run.evaluation, run.report_dir, run.snapshot.as_params(),
        {"data_key": step.data_key, "flow_run_id": flow_run_id or ""}, train_data=run.train,
        run_name=f"train-{run.run_id}",
    )
    version = registry.register_challenger(settings, mlflow_run_id)
    champion_before = registry.champion_version(settings)
    decision = registry.gate(settings, version, run.test, baseline_aiq=baseline_aiq)
    champion_after = registry.champion_version(settings)
    now = datetime.now(UTC).replace(tzinfo=None)
    with open_store(settings) as con:
        execute(con, "routing/insert_promotion", {
            "now": now, "registered_model": settings.registered_model, "challenger": str(version),
            "champion_before": None if champion_before is None else str(champion_before),
            "champion_after": None if champion_after is None else str(champion_after),
            "challenger_aiq": decision.challenger_aiq, "champion_aiq": decision.champion_aiq,
            "baseline_aiq": baseline_aiq, "promoted": decision.promoted, "reason": decision.reason,
            "flow_run_id": flow_run_id,
        })
        execute(con, "nightly/insert_training_run", {
            "run_id": run.run_id, "data_key": step.data_key, "mlflow_run_id": mlflow_run_id,
            "model_version": str(version), "attention_aiq": run.aiq(ATTENTION), "best_baseline": baseline_name,
            "baseline_aiq": baseline_aiq, "report_dir": str(run.report_dir), "flow_run_id": flow_run_id,
            "now": now,
        })
    return PromotionStep(False, version, decision.as_dict(), mlflow_run_id)


# -------------------------------------------------------------------------------------------------- route
def route(settings: Settings, *, reward: str = "linear", reward_param: float | None = None,
          budget: float | None = None, flow_run_id: str | None = None) -> dict[str, Any]:
    """Route the pending backlog with the registry's champion (loaded once)."""
    from router import registry
    from router.routing import route_backlog

    version = registry.champion_version(settings)
    if version is None:
        log.warning("no champion registered yet: the backlog is not routed")
        return {"routed": 0, "model_version": None, "reason": "no champion"}
    loaded = registry.load_version(settings, version)
    if loaded.pool.encoder != settings.encoder:
        raise RuntimeError(f"champion v{version} was trained with encoder {loaded.pool.encoder!r} but the store "
                           f"embeds with {settings.encoder!r}: retrain, or set ROUTER_ENCODER")
    with open_store(settings) as con:
        summary = route_backlog(
            con, loaded.router, model_version=str(version), router_name=settings.registered_model,
            encoder=settings.encoder, reward_name=reward, reward_param=reward_param, budget=budget,
            batch_size=settings.route_batch_size, flow_run_id=flow_run_id,
        )
    return asdict(summary)
