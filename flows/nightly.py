"""The nightly pipeline and its sub-flows.

    routerctl nightly                       # run it now (ephemeral Prefect server by default)
    prefect deploy --all --prefect-file flows/prefect.yaml   # schedule it (02:00 UTC) on a process work pool

Each sub-flow wraps one step of ``router.nightly``; tasks that can fail transiently (reading files, the
MLflow store) retry; every step has a timeout; the run ends with a markdown artifact summarising it.
"""

from __future__ import annotations

from flows.env import configure

SETTINGS = configure()

import logging  # noqa: E402
from dataclasses import asdict  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from router import nightly as steps  # noqa: E402
from router.locking import workspace_lock  # noqa: E402
from router.settings import Settings  # noqa: E402
from router.doctor import DoctorFailed  # noqa: E402
from router.storage import NIGHTLY_WAIT_SECONDS, open_store, wait_seconds  # noqa: E402


class _ExpectedErrorsWithoutTraceback(logging.Filter):
    """An expected failure (:class:`~router.errors.RouterError`: bad input, busy store, ...) is logged by Prefect as
    its message alone; a traceback there would read as a bug. Bugs keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from router.errors import is_expected

        if record.exc_info and record.exc_info[1] is not None and is_expected(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(_name).addFilter(_ExpectedErrorsWithoutTraceback())
if logging.getLogger("router").getEffectiveLevel() > logging.INFO:  # a worker's root logger is at WARNING
    logging.getLogger("router").setLevel(logging.INFO)


def _settings() -> Settings:
    return Settings()


def _flow_run_id() -> str:
    return str(flow_run.get_id() or f"local-{datetime.now(UTC):%Y%m%dT%H%M%S}")


def _embed_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return f"embed-{parameters['fingerprint']}"


# ---------------------------------------------------------------------------------------------------- tasks
@task(name="ingest-landing", retries=2, retry_delay_seconds=10, timeout_seconds=3600, cache_policy=NO_CACHE)
def ingest_task() -> dict[str, Any]:
    summary = steps.ingest_landing(_settings())
    log = get_run_logger()
    for note in summary.notes:
        log.warning(note)
    for rejected in summary.rejected:
        log.error("rejected: %s", rejected)
    return {**asdict(summary), "rows_new": summary.rows_new, "rows_quarantined": summary.rows_quarantined}


@task(name="validate-ingest", cache_policy=NO_CACHE)
def validate_task(ingest: dict[str, Any]) -> dict[str, Any]:
    summary = steps.IngestSummary(ingest["files"], ingest["rejected"], ingest["notes"])
    result = steps.check_ingest(summary)
    if not result.ok:
        get_run_logger().warning("validation problems: %s", "; ".join(result.problems))
    return asdict(result)


@task(name="store-fingerprint", cache_policy=NO_CACHE)
def fingerprint_task() -> str:
    from router.storage import scalar

    settings = _settings()
    with open_store(settings, wait=wait_seconds(NIGHTLY_WAIT_SECONDS)) as con:
        return f"{settings.encoder}:{scalar(con, 'nightly/prompt_fingerprint')}"


@task(name="embed-prompts", retries=1, timeout_seconds=6 * 3600, cache_key_fn=_embed_cache_key,
      cache_expiration=timedelta(days=30), persist_result=True)
def embed_task(fingerprint: str) -> dict[str, Any]:
    """Cached by the store's prompt fingerprint: an unchanged prompt set does not even load the encoder."""
    return steps.embed(_settings())


@task(name="fit-and-evaluate", timeout_seconds=2 * 3600, cache_policy=NO_CACHE)
def train_task() -> steps.TrainStep:
    return steps.train(_settings())


@task(name="register-and-gate", retries=2, retry_delay_seconds=15, timeout_seconds=1800, cache_policy=NO_CACHE)
def register_task(step: steps.TrainStep, flow_run_id: str) -> dict[str, Any]:
    return asdict(steps.register_and_promote(_settings(), step, flow_run_id))


@task(name="route-backlog", retries=1, retry_delay_seconds=10, timeout_seconds=6 * 3600, cache_policy=NO_CACHE)
def route_task(reward: str | None, reward_param: float | None, budget: float | None, flow_run_id: str) -> dict[str, Any]:
    return steps.route(_settings(), reward=reward, reward_param=reward_param, budget=budget, flow_run_id=flow_run_id)


# ---------------------------------------------------------------------------------------------- sub-flows
@flow(name="ingest", log_prints=True)
def ingest() -> dict[str, Any]:
    """Ingest new files from the landing folders (RouterBench, logs, backlog)."""
    return ingest_task()


@flow(name="validate")
def validate(ingest_summary: dict[str, Any]) -> dict[str, Any]:
    """Check the night's ingest: rejected files and mostly-quarantined files are flagged."""
    return validate_task(ingest_summary)


@flow(name="embed")
def embed() -> dict[str, Any]:
    """Embed prompts that have no vector for the configured encoder."""
    return embed_task(fingerprint_task())


@flow(name="train")
def train() -> steps.TrainStep:
    """Fit every router and evaluate them (skipped when the training inputs are unchanged)."""
    return train_task()


@flow(name="register_and_promote")
def register_and_promote(step: steps.TrainStep, flow_run_id: str) -> dict[str, Any]:
    """Log to MLflow, register the challenger and gate it against the champion."""
    return register_task(step, flow_run_id)


@flow(name="route_backlog")
def route_backlog(reward: str | None = None, reward_param: float | None = None, budget: float | None = None,
                  flow_run_id: str | None = None) -> dict[str, Any]:
    """Route every backlog query the champion has not decided yet."""
    return route_task(reward, reward_param, budget, flow_run_id or _flow_run_id())


@flow(name="report")
def report(started: datetime, flow_run_id: str, ingest_summary: dict[str, Any], validation: dict[str, Any],
           embedding: dict[str, Any], training: dict[str, Any], promotion: dict[str, Any],
           routing: dict[str, Any]) -> str:
    """Write the nightly report and the analysts' Parquet snapshots."""
    from router.night_report import write_night_report
    from router.snapshots import export_snapshots

    settings = _settings()
    with open_store(settings, wait=wait_seconds(NIGHTLY_WAIT_SECONDS)) as con:
        out = write_night_report(con, settings.reports, flow_run_id=flow_run_id, started=started,
                                 night=started.date(), ingest=ingest_summary, validation=validation,
                                 embed=embedding, train=training, promotion=promotion, routing=routing)
        export_snapshots(con, settings.snapshots)
    return str(out)


@task(name="doctor-checks", cache_policy=NO_CACHE)
def doctor_task() -> dict[str, Any]:
    return steps.doctor(_settings())


@flow(name="doctor")
def doctor(report_dir: str, started: datetime) -> dict[str, Any]:
    """Integrity checks of the store (``routerctl doctor``), appended to the report; then the report artifact.

    A doctor that finds problems (or cannot run) does not stop the report: its result is written into the
    report first, and the nightly flow raises afterwards, so the flow run ends failed with the report in place.
    """
    from pathlib import Path

    from router.night_report import append_doctor

    settings = _settings()
    try:
        result = doctor_task()
    except Exception as exc:  # noqa: BLE001 - a doctor that cannot run is itself a problem worth reporting
        from router.redact import mask

        result = {"ok": False, "problems": [f"doctor could not run: {mask(str(exc))}"], "checks": []}
    out = append_doctor(Path(report_dir), settings.reports, result)
    create_markdown_artifact(key="nightly-report", markdown=(out / "report.md").read_text()[:90_000],
                             description=f"Nightly report {started.date()} ({out})")
    if not result.get("ok"):
        get_run_logger().error("doctor found problems: %s", "; ".join(result.get("problems", [])))
    return result


def _training_summary(step: steps.TrainStep) -> dict[str, Any]:
    if step.skipped:
        return {"skipped": True, "data_key": step.data_key, **(step.previous or {})}
    run = step.run
    name, baseline = run.best_baseline()
    return {"skipped": False, "data_key": step.data_key, "run_id": run.run_id, "report_dir": str(run.report_dir),
            "attention_aiq": run.aiq("attention"), "best_baseline": name, "baseline_aiq": baseline,
            "seconds": sum(run.seconds.values())}


@flow(name="nightly", log_prints=True)
def nightly(reward: str | None = None, reward_param: float | None = None, budget: float | None = None,
            demo: bool = False) -> dict[str, Any]:
    """The whole night: ingest → validate → embed → train → register/promote → route backlog → report → doctor.

    Raises :class:`~router.doctor.DoctorFailed` (the flow run ends failed) when the doctor finds problems, after
    the report (with the doctor's section) and the artifact are written.
    """
    settings = _settings()
    settings.ensure_workspace()
    started = datetime.now(UTC).replace(tzinfo=None)
    run_id = _flow_run_id()
    with workspace_lock(settings.workspace, "pipeline"):
        if demo:
            steps.stage_demo_data(settings)
        ingested = ingest()
        validation = validate(ingested)
        embedding = embed()
        step = train()
        training = _training_summary(step)
        promotion = register_and_promote(step, run_id)
        routing = route_backlog(reward, reward_param, budget, run_id)
        out = report(started, run_id, ingested, validation, embedding, training, promotion, routing)
        checked = doctor(out, started)
    if not checked.get("ok"):
        raise DoctorFailed(f"the store failed its integrity checks ({'; '.join(checked.get('problems', []))}); "
                           f"see {out}/report.md")
    return {"report": out, "flow_run_id": run_id, "ingest": {k: ingested[k] for k in ("rows_new", "rows_quarantined")},
            "training": training, "promotion": {k: v for k, v in promotion.items() if k != "decision"},
            "decision": (promotion.get("decision") or {}).get("decision"), "routing": routing,
            "doctor": {"ok": checked.get("ok"), "problems": checked.get("problems", [])}}


if __name__ == "__main__":
    nightly()
