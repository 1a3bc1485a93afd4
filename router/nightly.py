"""The nightly pipeline's steps, as plain functions (the Prefect flows in ``flows/`` only orchestrate them).

ingest → validate → embed → train → register and promote → route backlog → report. Each step opens the store,
does its work in transactions and closes it, so a crash leaves no half-written step behind and a re-run
picks up where it stopped: ingest skips files already stored, embedding skips cached prompts, training is
skipped when its inputs (``data_key``) have not changed, routing skips queries the champion already decided.
Registration resumes too: a run killed after MLflow logged or registered the model reuses that run/version
(found by its ``data_key`` param) instead of registering a duplicate. ``docs/reliability.md`` lists the fault
points (``router.faults``) the tests kill the steps at, and what a re-run does after each.
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

from router import __version__, faults
from router.errors import RouterError
from router.settings import PROJECT_ROOT, Settings
from router.storage import NIGHTLY_WAIT_SECONDS, execute, transaction, wait_seconds
from router.storage import open_store as _open_store

log = logging.getLogger(__name__)
LANDING_KINDS = ("routerbench", "logs", "backlog")


def open_store(settings: Settings, **kwargs: Any):
    """The store for a nightly step: waits up to ``ROUTER_STORE_WAIT_SECONDS`` (default 60 s) while another
    process holds it, then fails with a clear :class:`~router.storage.StoreError`."""
    kwargs.setdefault("wait", wait_seconds(NIGHTLY_WAIT_SECONDS))
    return _open_store(settings, **kwargs)


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
    from router.ingest import IngestError, discover, ingest_files
    from router.validation import docs_batch

    summary = IngestSummary()
    # One Data Docs build for the night, whatever the number of kinds and files.
    with faults.step("ingest"), open_store(settings) as con, docs_batch(settings.gx_docs, settings.gx_docs_keep):
        for kind in LANDING_KINDS:
            folder = settings.landing(kind)
            if not folder.is_dir():
                continue
            files, notes = discover([folder], kind, allow_pickle=settings.allow_pickle)
            summary.notes.extend(notes)
            for _, outcome in ingest_files(con, kind, files, settings):
                if isinstance(outcome, IngestError):
                    log.error("rejected %s", outcome)
                    summary.rejected.append(str(outcome))
                else:
                    summary.files.append(asdict(outcome))
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

    with faults.step("embed"), open_store(settings) as con:
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
    from router.pipeline import NotEnoughData, train_and_evaluate

    with open_store(settings) as con:
        key = data_key(settings, snapshot(con).ingest_runs)
        previous = execute(con, "nightly/training_run_by_key", {"data_key": key})
        if previous:
            cols = ("run_id", "model_version", "attention_aiq", "best_baseline", "baseline_aiq", "report_dir")
            log.info("training inputs unchanged (data_key %s): skipping training", key)
            return TrainStep(True, key, previous=dict(zip(cols, previous[0], strict=True)))
        with faults.step("train"):
            try:
                run = train_and_evaluate(con, settings, dataset=f"store {settings.database.name}")
            except NotEnoughData as exc:  # the night embedded what it had: the missing piece is RouterBench data
                raise NotEnoughData(f"{exc.args[0].split(':')[0]}: the store holds no RouterBench training "
                                    f"data. Put RouterBench files in {settings.landing('routerbench')} (or run "
                                    "`routerctl nightly --demo`) and run the nightly again") from None
            faults.point("fitted")
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
    with faults.step("register"):
        mlflow_run_id, version, record = _resume_registration(settings, step.data_key)
        if mlflow_run_id is None:
            mlflow_run_id = registry.log_training_run(
                settings, run.routers[ATTENTION], run.evaluation, run.report_dir, run.snapshot.as_params(),
                {"data_key": step.data_key, "flow_run_id": flow_run_id or ""}, train_data=run.train,
                run_name=f"train-{run.run_id}",
            )
        faults.point("logged")
        if version is None:
            version = registry.register_challenger(settings, mlflow_run_id)
        if record is not None:  # a killed run already gated this version: reuse its decision
            log.info("resuming: v%s was already gated (%s)", version, record["decision"])
            decision = _decision_from_record(record)
            champion_before = record.get("champion_version")
        else:
            champion_before = registry.champion_version(settings)
            decision = registry.gate(settings, version, run.test, baseline_aiq=baseline_aiq)
        champion_after = registry.champion_version(settings)
        faults.point("gated")
    now = datetime.now(UTC).replace(tzinfo=None)
    with open_store(settings) as con, transaction(con):  # both rows or neither
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
def _resume_registration(settings: Settings, key: str) -> tuple[str | None, int | None, dict[str, Any] | None]:
    """(MLflow run id, registered version, gate record) left by an earlier attempt with the same ``data_key``
    that died before recording its result in the store; ``(None, None, None)`` when there is none.

    The gate record is reused only when it is final: a rejection, or a promotion whose alias was moved."""
    from router import registry

    if not key.isalnum():  # data keys are hex digests; anything else never reaches a filter string
        return None, None, None
    with registry.tracking(settings) as client:
        experiment = client.get_experiment_by_name(settings.mlflow_experiment)
        if experiment is None:
            return None, None, None
        runs = client.search_runs([experiment.experiment_id], filter_string=f"params.data_key = '{key}'",
                                  order_by=["attributes.start_time DESC"], max_results=5)
        runs = [r for r in runs if r.data.tags.get(registry.MODEL_ID_TAG)]  # the model was logged completely
        if not runs:
            return None, None, None
        run_id = runs[0].info.run_id
        versions = [v for v in client.search_model_versions(f"run_id = '{run_id}'")
                    if v.name == settings.registered_model]
        if not versions:
            return run_id, None, None
        mv = max(versions, key=lambda v: int(v.version))
        version = int(mv.version)
        raw = (mv.tags or {}).get(f"gate.v{version}")
        champion = registry._alias_version(client, settings.registered_model, registry.CHAMPION)
    record = None
    if raw:
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
    if record is not None and record.get("decision") == "promoted" and champion != version:
        record = None  # killed between the gate's tags and the alias move: gate again
    log.info("resuming registration: MLflow run %s, version %s", run_id, version)
    return run_id, version, record


def _decision_from_record(record: dict[str, Any]):
    from router.registry import PromotionDecision

    return PromotionDecision(
        promoted=record.get("decision") == "promoted", challenger_version=int(record["challenger_version"]),
        champion_version=record.get("champion_version"), challenger_aiq=record.get("challenger_aiq"),
        champion_aiq=record.get("champion_aiq"), baseline_aiq=record.get("baseline_aiq"),
        tolerance=float(record.get("tolerance") or 0.0), checks=dict(record.get("checks") or {}),
        reason=str(record.get("reason", "")), reward=str(record.get("reward", "linear")),
        decided_at=str(record.get("decided_at", "")),
    )


def route(settings: Settings, *, reward: str | None = None, reward_param: float | None = None,
          budget: float | None = None, flow_run_id: str | None = None) -> dict[str, Any]:
    """Route the pending backlog with the registry's champion (loaded once).

    Arguments left out come from the settings (``ROUTER_ROUTE_REWARD``, ``ROUTER_ROUTE_LAMBDA``,
    ``ROUTER_ROUTE_BUDGET_USD``), so a scheduled run is configured like everything else.
    """
    reward = reward or settings.route_reward
    if reward_param is None and budget is None:
        reward_param, budget = settings.route_lambda, settings.route_budget_usd
        if budget is not None:
            reward_param = None
    from router import registry
    from router.routing import route_backlog

    version = registry.champion_version(settings)
    if version is None:
        log.warning("no champion registered yet: the backlog is not routed")
        return {"routed": 0, "model_version": None, "reason": "no champion"}
    loaded = registry.load_version(settings, version)
    if loaded.pool.encoder != settings.encoder:
        raise RouterError(f"champion v{version} was trained with encoder {loaded.pool.encoder!r} but the store "
                           f"embeds with {settings.encoder!r}: retrain, or set ROUTER_ENCODER")
    with faults.step("route"), open_store(settings) as con:
        summary = route_backlog(
            con, loaded.router, model_version=str(version), router_name=settings.registered_model,
            encoder=settings.encoder, reward_name=reward, reward_param=reward_param, budget=budget,
            batch_size=settings.route_batch_size, flow_run_id=flow_run_id,
        )
    return asdict(summary)


# ------------------------------------------------------------------------------------------------- doctor
def doctor(settings: Settings, *, check_registry: bool = True) -> dict[str, Any]:
    """The store's integrity checks (``router.doctor``), as a dict for the report: ``ok``, ``checks``."""
    from router.doctor import run_checks

    return run_checks(settings, check_registry=check_registry, wait=wait_seconds(NIGHTLY_WAIT_SECONDS)).as_dict()
