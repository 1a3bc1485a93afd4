"""The nightly pipeline's steps, as plain functions (the Prefect flows in ``flows/`` only orchestrate them).

ingest → validate → embed → drift → onboard → train → register and promote → route backlog → scenarios → report →
doctor, in that order in :data:`STEPS`, the one list the Prefect flow, the benchmark's night and the fault tests all
iterate (each a :class:`Step`: name, function of the :class:`Night`, what it reads and writes). Each step opens
the store, does its work in transactions and closes it, so a crash leaves no half-written step behind and a re-run
picks up where it stopped: ingest skips files already stored, embedding skips cached prompts, training is
skipped when its inputs (``data_key``) have not changed (a retrain would reproduce the same version), routing
skips queries the champion already decided.
Registration resumes too: a run killed after MLflow logged or registered the model reuses that run/version
(found by its ``data_key`` param) instead of registering a duplicate. ``docs/reliability.md`` lists the fault
points (``router.faults``) the tests kill the steps at, and what a re-run does after each; every step also
has a boundary point ``<step>.done`` (its work finished, the next step not started).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from router import __version__, faults, promotions, resources
from router.errors import RouterError
from router.settings import Settings
from router.storage import NIGHTLY_WAIT_SECONDS, execute, transaction, wait_seconds
from router.storage import open_store as _open_store

log = logging.getLogger(__name__)
LANDING_KINDS = ("routerbench", "logs", "backlog", "prices")


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
    copied = []
    for kind, files in resources.demo_files().items():
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


# -------------------------------------------------------------------------------------------------- drift
def drift(settings: Settings, *, flow_run_id: str, started: datetime) -> dict[str, Any]:
    """Tonight's drift checks (``router.drift``) against the champion, recorded in ``drift_checks``; returns
    :func:`router.drift.summary` (``breached`` marks the night and warns; the train step says why it did not
    retrain when its inputs are unchanged)."""
    from router import drift as checks
    from router.registry import promotion

    champion = promotion.champion_version(settings)  # the alias: a move made in MLflow has no promotions row yet
    with faults.step("drift"), open_store(settings) as con:
        found, version = checks.prompt_checks(con, settings, started, champion)
        outcomes = checks.logged_outcomes(con, settings, started) if version else None
    most = max(Counter(outcomes["model"].tolist()).values()) if outcomes and len(outcomes["model"]) else 0
    if most and most < settings.drift_min_outcomes:  # not worth loading the champion
        found.append(checks.skipped("calibration", settings.drift_quality_error, f"at most {most} logged outcomes "
                                    f"of a model tonight ({settings.drift_min_outcomes} needed)"))
    elif most:
        try:
            loaded = promotion.load_version(settings, int(version))
        except Exception as exc:  # noqa: BLE001 - the prompt checks stand; the outcome checks are recorded skipped
            log.warning("champion v%s could not be loaded for the calibration checks: %s", version, exc)
            found.append(checks.skipped("calibration", settings.drift_quality_error,
                                        f"champion v{version} could not be loaded: {str(exc)[:300]}"))
        else:
            found += checks.outcome_checks(outcomes, loaded.router.predict, list(loaded.pool.models), settings)
    result = checks.DriftResult(started.date().isoformat(), flow_run_id, found)
    with open_store(settings) as con:
        checks.record(con, result)
    if result.breached:
        log.warning("drift checks breached: %s", ", ".join(result.fired))
    return checks.summary(result)


# -------------------------------------------------------------------------------------------------- train
def data_key(settings: Settings, ingest_runs: list[str]) -> str:
    """Identity of a training run's inputs: the ingest runs, encoder (its name and files) and representation
    settings (the learned templates follow from the ingest runs), seed and the routers' code."""
    from router.encoder import weights_fingerprint
    from router.representation import Representation

    payload = {"runs": sorted(ingest_runs), "encoder": settings.encoder, "seed": settings.seed,
               "encoder_weights": weights_fingerprint(settings.encoder),
               "representation": Representation.from_settings(settings).key,
               "version": __version__, "code": resources.routers_code()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class TrainStep:
    skipped: bool
    data_key: str
    run: Any = None  # router.pipeline.TrainRun when trained
    previous: dict[str, Any] | None = None  # the earlier training run with the same data_key
    calibration: Any = None  # router.policy.Calibration of the attention router, when trained
    note: str | None = None  # why a skipped step did not retrain although tonight's drift checks breached

    def summary(self) -> dict[str, Any]:
        """What the night's report shows of the training step."""
        if self.skipped:
            return {"skipped": True, "data_key": self.data_key, **(self.previous or {}),
                    **({"note": self.note} if self.note else {})}
        name, baseline = self.run.best_baseline()
        return {"skipped": False, "data_key": self.data_key, "run_id": self.run.run_id,
                "report_dir": str(self.run.report_dir), "attention_aiq": self.run.aiq("attention"),
                "best_baseline": name, "baseline_aiq": baseline, "seconds": sum(self.run.seconds.values())}


def train(settings: Settings, *, drifted: bool = False) -> TrainStep:
    """Fit and evaluate every router; skipped when a training run with the same ``data_key`` exists.

    Tonight's drift checks (``drifted``: one breached) do not change that: the fit and its calibration are seeded
    and deterministic, so a run on the inputs of a finished one would reproduce its version bit for bit (and
    re-route the whole backlog under an identical new version). The step's summary then says why nothing was
    retrained; the router learns from the drifted traffic when outcomes of it are ingested (new inputs)."""
    from router.dataset import snapshot
    from router.pipeline import NotEnoughData, train_and_evaluate

    with open_store(settings) as con:
        key = data_key(settings, snapshot(con).ingest_runs)
        previous = execute(con, "nightly/training_run_by_key", {"data_key": key})
        if previous:
            cols = ("run_id", "model_version", "attention_aiq", "best_baseline", "baseline_aiq", "report_dir")
            found = dict(zip(cols, previous[0], strict=True))
            log.info("training inputs unchanged (data_key %s): skipping training", key)
            note = None
            if drifted:
                note = (f"Tonight's drift checks breached, but the training inputs are those of run "
                        f"`{found['run_id']}` (v{found['model_version']}): a retrain would reproduce that version, so "
                        "none was made. The router learns from the drifted traffic once its outcomes are ingested.")
                log.warning("%s", note.replace("`", ""))
            return TrainStep(True, key, previous=found, note=note)
        with faults.step("train"):
            try:
                run = train_and_evaluate(con, settings, dataset=f"store {settings.database.name}")
            except NotEnoughData as exc:  # the night embedded what it had: the missing piece is RouterBench data
                raise NotEnoughData(f"{exc.args[0].split(':')[0]}: the store holds no RouterBench training "
                                    f"data. Put RouterBench files in {settings.landing('routerbench')} (or run "
                                    "`routerctl nightly --demo`) and run the nightly again") from None
            faults.point("fitted")
    from router.policy import calibrate_training_run  # the default routing policy, on the train split only

    return TrainStep(False, key, run=run, calibration=calibrate_training_run(settings, run))


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
    from router.pipeline import ATTENTION, BASELINES
    from router.registry import promotion, tracking

    if step.skipped:
        return PromotionStep(True, version=(step.previous or {}).get("model_version"))
    run = step.run
    baseline_name, baseline_aiq = run.best_baseline()
    with faults.step("register"):
        mlflow_run_id, version, record = _resume_registration(settings, {"data_key": step.data_key})
        if mlflow_run_id is None:
            mlflow_run_id = tracking.log_training_run(
                settings, run.routers[ATTENTION], run.evaluation, run.report_dir, run.snapshot.as_params(),
                {"data_key": step.data_key, "flow_run_id": flow_run_id or ""}, train_data=run.train,
                run_name=f"train-{run.run_id}", policy=step.calibration, templates=run.templates,
            )
        faults.point("logged")
        if version is None:
            version = promotion.register_challenger(settings, mlflow_run_id)
        if record is not None:  # a killed run already gated this version: reuse its decision
            log.info("resuming: v%s was already gated (%s)", version, record["decision"])
            decision = _decision_from_record(record)
            champion_before = record.get("champion_version")
        else:
            champion_before = promotion.champion_version(settings)
            baseline_se = run.aiq_se(ATTENTION, baseline_name, settings.seed)  # the bar's noise, if no champion
            decision = promotion.gate(settings, version, run.test, baseline_aiq=baseline_aiq, baseline_se=baseline_se,
                                      baselines=len(BASELINES))
        champion_after = promotion.champion_version(settings)
        faults.point("gated")
    now = datetime.now(UTC).replace(tzinfo=None)
    with open_store(settings) as con, transaction(con):  # both rows or neither
        promotions.record_gate(con, settings.registered_model, version, champion_before, champion_after, decision,
                               baseline_aiq, flow_run_id)
        execute(con, "nightly/insert_training_run", {
            "run_id": run.run_id, "data_key": step.data_key, "mlflow_run_id": mlflow_run_id,
            "model_version": str(version), "attention_aiq": run.aiq(ATTENTION), "best_baseline": baseline_name,
            "baseline_aiq": baseline_aiq, "report_dir": str(run.report_dir), "flow_run_id": flow_run_id,
            "now": now,
        })
    return PromotionStep(False, version, decision.as_dict(), mlflow_run_id)


# ------------------------------------------------------------------------------------------------ onboard
def onboard_model(settings: Settings, model: str, flow_run_id: str | None = None) -> PromotionStep:
    """Onboard ``model`` into the champion (``router.onboarding``): learn its embedding row from its stored
    outcomes (less a seeded ``ROUTER_ONBOARD_HOLDOUT_FRACTION`` held out), log and register the extended router
    as ``challenger``, and gate it on the test rows both versions can be scored on plus the held-out outcomes.

    Raises :class:`~router.errors.RouterError` (exit 2) when no stored outcome names ``model``, when there is
    no champion or it already routes to ``model``, and :class:`~router.onboarding.NotEnoughOutcomes` when
    ``model`` has fewer than ``ROUTER_ONBOARD_MIN_OUTCOMES`` scored outcomes (it then gets no traffic).
    """
    import numpy as np

    from router.dataset import load_routing_data, model_pool, snapshot
    from router.embeddings import stored_templates
    from router.evaluation import evaluate
    from router.onboarding import NotEnoughOutcomes, Outcomes, held_out_check, holdout_split, onboard
    from router.policy import Calibration
    from router.registry import promotion, tracking

    with open_store(settings, read_only=True) as con:
        known = model_pool(con)
        if model not in known:
            raise RouterError(f"no stored outcome names model {model!r}; the store's models: {', '.join(known)}")
        version = promotion.champion_version(settings)
        if version is None:
            raise RouterError("no champion to onboard into: run `routerctl nightly` first")
        loaded = promotion.load_version(settings, version)
        pool = list(loaded.router.models)
        if model in pool:
            raise RouterError(f"champion v{version} already routes to {model!r}: nothing to onboard")
        mine = load_routing_data(con, settings.encoder, None, models=[model])
        train = load_routing_data(con, settings.encoder, "train", models=[*pool, model])
        test = load_routing_data(con, settings.encoder, "test", models=pool)
        snap = snapshot(con)
        templates = stored_templates(con)  # the store's vectors (the champion's and the new model's) were stripped of these
    rows = np.flatnonzero(~np.isnan(mine.quality[:, 0]))
    if rows.size < settings.onboard_min_outcomes:
        raise NotEnoughOutcomes(f"model {model!r} has {rows.size} scored outcomes with an embedded prompt; "
                                f"onboarding needs at least {settings.onboard_min_outcomes} "
                                "(ROUTER_ONBOARD_MIN_OUTCOMES): it gets no traffic until then")
    outcomes = Outcomes(mine.X[rows], mine.prompt_chars[rows], mine.quality[rows, 0], mine.cost[rows, 0],
                        mine.eval_names[rows])
    fit_rows, held_rows = holdout_split(outcomes.n, settings.onboard_holdout_fraction, settings.seed)
    with faults.step("onboard"):
        # An earlier attempt that died after logging, registering or gating is resumed, not repeated.
        mlflow_run_id, challenger, record, finished = _onboarding_state(settings, model, version)
        if finished:
            log.info("%s was already onboarded into v%s as v%s and gated (%s)", model, version, challenger,
                     record["decision"])
            return PromotionStep(False, challenger, _decision_from_record(record).as_dict(), mlflow_run_id)
        if record is None:  # not gated yet: the seeded fit again (a logged run was fitted the same way)
            done = onboard(loaded.router, model, outcomes.take(fit_rows))
            check = held_out_check(done.router, model, outcomes.take(held_rows), outcomes.take(fit_rows))
        if mlflow_run_id is None:
            q_hat, c_hat = done.router.predict(test.X, test.prompt_chars, test.eval_names)
            metrics = evaluate({"attention": (q_hat[:, : len(pool)], c_hat[:, : len(pool)], "linear")},
                               test.quality, test.cost, test.eval_names, test.models,
                               dataset=f"store {settings.database.name}", n_train=train.n, n_test=test.n).metrics
            mlflow_run_id = tracking.log_training_run(
                settings, done.router, metrics, None, snap.as_params(),
                {**_onboarding_params(model, version), "onboard.n_fit": done.n_fit, "onboard.n_held": check.n,
                 "onboard.seconds": round(done.seconds, 3), "flow_run_id": flow_run_id or ""},
                train_data=train, run_name=f"onboard-v{version}", tags={"onboarded_model": model},
                policy=Calibration.from_dict(loaded.policy) if loaded.policy else None, templates=templates,
            )
        faults.point("logged")
        if challenger is None:
            challenger = promotion.register_challenger(settings, mlflow_run_id,
                                                       description=f"champion v{version} + onboarded {model}")
        if record is not None:  # gated before the attempt died: the decision stands
            decision = _decision_from_record(record)
        else:
            decision = promotion.gate(settings, challenger, test, held_out=check)
        faults.point("gated")
    with open_store(settings) as con:
        promotions.record_gate(con, settings.registered_model, challenger, version,
                               promotion.champion_version(settings), decision, None, flow_run_id)
    return PromotionStep(False, challenger, decision.as_dict(), mlflow_run_id)


def _onboarding_params(model: str, champion: int) -> dict[str, str]:
    """The MLflow params naming an onboarding run: the model onboarded and the champion it extends."""
    return {"onboarded_model": model, "onboarded_into": str(champion)}


def _onboarding_state(settings: Settings, model: str, champion: int
                      ) -> tuple[str | None, int | None, dict[str, Any] | None, bool]:
    """What earlier attempts left of onboarding ``model`` into version ``champion``: (MLflow run id, registered
    challenger, gate record) as :func:`_resume_registration` finds them, and whether it was finished: run logged
    and registered, challenger gated, and the gate recorded in the store."""
    run_id, challenger, record = _resume_registration(settings, _onboarding_params(model, champion))
    finished = challenger is not None and record is not None and _gate_recorded(settings, challenger)
    return run_id, challenger, record, finished


def _gate_recorded(settings: Settings, version: int) -> bool:
    """Whether the store holds the gate's ``promotions`` row of ``version``."""
    with open_store(settings, read_only=True) as con:
        return bool(execute(con, "routing/promotion_of", {"registered_model": settings.registered_model,
                                                           "challenger": str(version)}))


def onboard_new_models(settings: Settings, *, flow_run_id: str | None = None) -> dict[str, Any]:
    """The nightly's onboarding: every model named by stored outcomes that the champion does not route to is
    onboarded (:func:`onboard_model`) when tonight's train step will not retrain (its ``data_key`` is unchanged; a
    full retrain, when it happens, fits every stored model instead). A model with too few outcomes is noted and gets
    no traffic; one already onboarded into this champion (and not promoted) is not
    tried again until the champion changes."""
    from router.dataset import model_pool, snapshot
    from router.onboarding import NotEnoughOutcomes
    from router.registry import promotion

    version = promotion.champion_version(settings)
    result: dict[str, Any] = {"champion": version, "onboarded": [], "notes": []}
    if version is None:
        result["notes"].append("no champion: nothing to onboard into")
        return result
    with open_store(settings, read_only=True) as con:
        stored = model_pool(con)
        key = data_key(settings, snapshot(con).ingest_runs)
        retrain = not execute(con, "nightly/training_run_by_key", {"data_key": key})
    pool = set(promotion.load_version(settings, version).pool.models)
    unknown = [m for m in stored if m not in pool]
    if unknown and retrain:
        result["notes"].append(f"{', '.join(unknown)}: not onboarded, tonight's full retrain fits those with "
                               f"{settings.onboard_min_outcomes} outcomes or more (inputs changed)")
        return result
    for model in unknown:
        if _onboarded_before(settings, model, version):
            result["notes"].append(f"{model}: already onboarded into v{version} and gated")
            continue
        try:
            step = onboard_model(settings, model, flow_run_id)
        except NotEnoughOutcomes as exc:
            log.info("%s", exc)
            result["notes"].append(str(exc))
            continue
        result["onboarded"].append({"model": model, **asdict(step)})
        version = promotion.champion_version(settings) or version
    return result


def _onboarded_before(settings: Settings, model: str, champion: int) -> bool:
    """Whether ``model`` was already onboarded into version ``champion`` to the end: its run logged and
    registered, the challenger gated and the gate recorded in the store (an attempt that died before that is
    resumed by :func:`onboard_model`)."""
    return _onboarding_state(settings, model, champion)[3]


def _resume_registration(settings: Settings, params: Mapping[str, str]
                         ) -> tuple[str | None, int | None, dict[str, Any] | None]:
    """(MLflow run id, registered version, gate record) of the newest completely logged run with these ``params``
    (a training run's ``data_key``; an onboarding's model and champion), left by an earlier attempt that may have
    died before recording its result in the store; ``(None, None, None)`` when there is none.

    The gate record is reused only when it is final: a rejection, or a promotion whose alias was moved."""
    from router.registry import promotion, tracking

    # Values with a quote or backslash (a model's name may have one) never enter the filter string; every value is
    # compared again on the runs found.
    safe = {name: value for name, value in params.items() if "'" not in value and "\\" not in value}
    if not safe:
        return None, None, None
    where = " and ".join(f"params.{name} = '{value}'" for name, value in safe.items())
    with tracking.connect(settings) as client:
        experiment = client.get_experiment_by_name(settings.mlflow_experiment)
        if experiment is None:
            return None, None, None
        runs = client.search_runs([experiment.experiment_id], filter_string=where,
                                  order_by=["attributes.start_time DESC"], max_results=100)
        runs = [r for r in runs if r.data.tags.get(tracking.MODEL_ID_TAG)  # the model was logged completely
                and all(r.data.params.get(name) == value for name, value in params.items())]
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
        champion = promotion.alias_version(client, settings.registered_model, promotion.CHAMPION)
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
    from router.registry.gate import PromotionDecision

    return PromotionDecision(
        promoted=record.get("decision") == "promoted", challenger_version=int(record["challenger_version"]),
        champion_version=record.get("champion_version"), challenger_aiq=record.get("challenger_aiq"),
        champion_aiq=record.get("champion_aiq"), baseline_aiq=record.get("baseline_aiq"),
        baseline_se=record.get("baseline_se"), tolerance=float(record.get("tolerance") or 0.0),
        checks=dict(record.get("checks") or {}),
        reason=str(record.get("reason", "")), reward=str(record.get("reward", "linear")),
        decided_at=str(record.get("decided_at", "")),
    )


# -------------------------------------------------------------------------------------------------- route
def route(settings: Settings, *, reward: str | None = None, reward_param: float | None = None,
          budget: float | None = None, quality_target: float | None = None,
          exclude: list[str] | None = None, flow_run_id: str | None = None, day: date | None = None
          ) -> dict[str, Any]:
    """Route the pending backlog with the registry's champion (loaded once).

    The champion's predicted costs are rescaled by the price factors in force on ``day`` (default: today, UTC;
    ``router.prices``); the result's ``prices`` gives every model's factor and the prices behind it.

    Arguments left out come from the settings (``ROUTER_ROUTE_REWARD``, ``ROUTER_ROUTE_LAMBDA``,
    ``ROUTER_ROUTE_BUDGET_USD``, ``ROUTER_ROUTE_QUALITY_TARGET``, ``ROUTER_POOL_EXCLUDE``), so a scheduled run is configured like
    everything else. A λ or a budget overrides the default policy, the quality target (``router.policy``),
    which reads the parameter off the champion's stored calibration.
    """
    from router import champion
    from router.routing import route_backlog

    plan = champion.plan(settings, reward=reward, reward_param=reward_param, budget=budget,
                         quality_target=quality_target)
    if plan is None:
        log.warning("no champion registered yet: the backlog is not routed")
        return {"routed": 0, "model_version": None, "reason": "no champion"}
    with faults.step("route"), open_store(settings) as con:
        moved = promotions.reconcile(con, settings.registered_model, int(plan.version), flow_run_id)
        factors = plan.price_factors(con, day)
        summary = route_backlog(
            con, plan.router, router_name=settings.registered_model, encoder=settings.encoder,
            batch_size=settings.route_batch_size, flow_run_id=flow_run_id,
            **plan.route_kwargs(factors, settings.pool_exclude if exclude is None else exclude),
        )
    # "policy" describes how the parameter was chosen; the decisions' key stays beside it as "policy_key"
    return {**asdict(summary), "policy": plan.policy, "policy_key": summary.policy, "prices": factors.as_dict(),
            "champion_moved": moved}


# ------------------------------------------------------------------------------------------------- doctor
def doctor(settings: Settings, *, check_registry: bool = True) -> dict[str, Any]:
    """The store's integrity checks (``router.doctor``), as a dict for the report: ``ok``, ``checks``."""
    from router.doctor import run_checks

    return run_checks(settings, check_registry=check_registry, wait=wait_seconds(NIGHTLY_WAIT_SECONDS)).as_dict()


# ---------------------------------------------------------------------------------------------- the night
@dataclass
class Night:
    """One run of :data:`STEPS`: its settings, id, start and routing options, and each finished step's result
    by step name (what later steps read)."""

    settings: Settings
    flow_run_id: str
    started: datetime
    reward: str | None = None
    reward_param: float | None = None
    budget: float | None = None
    results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One step of the night: ``run(night)`` returns its result; ``reads``/``writes`` name the store tables,
    folders, registry and earlier steps' results it uses and changes."""

    name: str
    run: Callable[[Night], Any]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    what: str


def _ingest(night: Night) -> dict[str, Any]:
    summary = ingest_landing(night.settings)
    for note in summary.notes:
        log.warning(note)
    return {**asdict(summary), "rows_new": summary.rows_new, "rows_quarantined": summary.rows_quarantined}


def _validate(night: Night) -> dict[str, Any]:
    ingested = night.results["ingest"]
    result = check_ingest(IngestSummary(ingested["files"], ingested["rejected"], ingested["notes"]))
    if not result.ok:
        log.warning("validation problems: %s", "; ".join(result.problems))
    return asdict(result)


def _drift(night: Night) -> dict[str, Any]:
    return drift(night.settings, flow_run_id=night.flow_run_id, started=night.started)


def _onboard(night: Night) -> dict[str, Any]:
    return onboard_new_models(night.settings, flow_run_id=night.flow_run_id)


def _train(night: Night) -> TrainStep:
    return train(night.settings, drifted=bool((night.results.get("drift") or {}).get("breached")))


def _register(night: Night) -> dict[str, Any]:
    return asdict(register_and_promote(night.settings, night.results["train"], night.flow_run_id))


def _route(night: Night) -> dict[str, Any]:
    return route(night.settings, reward=night.reward, reward_param=night.reward_param, budget=night.budget,
                 flow_run_id=night.flow_run_id)


def _scenarios(night: Night) -> dict[str, Any]:
    from router.scenarios import scenarios_step

    return scenarios_step(night.settings, reward=night.reward)


def _report(night: Night) -> str:
    """The night's report (``reports/<night>/``) and the analysts' Parquet snapshots; returns the report's folder."""
    from router.night_report import write_night_report
    from router.snapshots import export_snapshots

    s, r = night.settings, night.results
    with open_store(s) as con:
        out = write_night_report(con, s.reports, flow_run_id=night.flow_run_id, started=night.started,
                                 night=night.started.date(), ingest=r["ingest"], validation=r["validate"],
                                 embed=r["embed"], train=r["train"].summary(), promotion=r["register"],
                                 routing=r["route"], drift=r.get("drift"), onboard=r.get("onboard"))
        export_snapshots(con, s.snapshots)
    return str(out)


def _doctor(night: Night) -> dict[str, Any]:
    """The store's checks, appended to the report. A doctor that cannot run is itself a problem: reported,
    not raised, so the report is complete either way (the caller fails the run when ``ok`` is false)."""
    from router.night_report import append_doctor
    from router.redact import mask

    try:
        result = doctor(night.settings)
    except Exception as exc:  # noqa: BLE001 - a doctor that cannot run is itself a problem worth reporting
        result = {"ok": False, "problems": [f"doctor could not run: {mask(str(exc))}"], "checks": []}
    append_doctor(Path(night.results["report"]), night.settings.reports, result)
    if not result.get("ok"):
        log.error("doctor found problems: %s", "; ".join(result.get("problems", [])))
    return result


STEPS: tuple[Step, ...] = (
    Step("ingest", _ingest, ("landing/{routerbench,logs,backlog,prices}", "ingest_runs"),
         ("prompts", "outcomes", "models", "backlog", "prices", "quarantine", "ingest_runs", "gx_docs/"),
         "ingest new files from the landing folders (validated, bad rows quarantined)"),
    Step("validate", _validate, ("ingest",), (),
         "flag rejected files and files with more than half their records quarantined"),
    Step("embed", lambda night: embed(night.settings), ("prompts", "embeddings", "prompt_templates"),
         ("embeddings", "prompt_templates"), "learn the prompt templates (when stripped) and embed the prompts that "
         "have no current vector for the encoder"),
    Step("drift", _drift, ("prompts", "outcomes", "embeddings", "training_runs", "promotions", "MLflow champion"),
         ("drift_checks",), "compare tonight's new prompts and logged outcomes with the champion's training data"),
    Step("onboard", _onboard, ("outcomes", "embeddings", "training_runs", "MLflow champion"),
         ("MLflow registry", "promotions"), "onboard models the champion does not know (enough outcomes, inputs "
         "otherwise unchanged): learn their embeddings, register and gate the extended router"),
    Step("train", _train, ("outcomes", "prompts", "embeddings", "training_runs", "drift", "calibration/"),
         ("reports/<run_id>/", "reports/latest/", "calibration/"), "fit every router and evaluate them, calibrate "
         "the default policy (skipped when the inputs are unchanged; after a drift breach it says why)"),
    Step("register", _register, ("train", "MLflow registry"), ("MLflow registry", "promotions", "training_runs"),
         "log to MLflow, register the challenger and gate it against the champion"),
    Step("route", _route, ("backlog", "embeddings", "routing_decisions", "prices", "promotions", "MLflow champion"),
         ("routing_decisions", "promotions"),
         "route every backlog query the champion has not decided yet"),
    Step("scenarios", _scenarios, ("backlog", "embeddings", "prices", "MLflow champion"),
         ("routing_scenarios", "routing_scenario_mix", "snapshots/", "reports/scenarios/"),
         "what-if routing of the backlog over the reward's sweep, for analysts (no decisions written)"),
    Step("report", _report, ("the store", "ingest", "validate", "embed", "drift", "train", "register", "route"),
         ("nightly_runs", "reports/<night>/", "snapshots/"),
         "write the night's report and the analysts' Parquet snapshots"),
    Step("doctor", _doctor, ("the store", "MLflow registry", "report"), ("reports/<night>/",),
         "the store's integrity checks, appended to the report"),
)
STEP: dict[str, Step] = {step.name: step for step in STEPS}


def run_step(step: Step, night: Night) -> Any:
    """Run ``step`` on ``night`` and keep its result; ``<step>.done`` is its boundary fault point."""
    with faults.step(step.name):
        result = step.run(night)
        night.results[step.name] = result
        faults.point("done")
    return result


def run_night(night: Night, after_step: Callable[[str], None] | None = None) -> Night:
    """Every step of :data:`STEPS` in order, without an orchestrator; ``after_step(name)`` after each. The steps
    share the versions they load (``router.registry.promotion.versions_cached``)."""
    from router.registry.promotion import versions_cached

    with versions_cached():
        for step in STEPS:
            run_step(step, night)
            if after_step is not None:
                after_step(step.name)
    return night
