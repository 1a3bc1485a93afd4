"""The nightly pipeline and its sub-flows.

    routerctl nightly                       # run it now (ephemeral Prefect server by default)
    prefect deploy --all --prefect-file flows/prefect.yaml   # schedule it (02:00 UTC) on a process work pool

The steps and their order are ``router.nightly.STEPS``; here each step becomes a task (its Prefect options in
:data:`TASK_OPTIONS`: retries where a failure can be transient, timeouts, the embed cache) inside a sub-flow
named after it. The run ends with a markdown artifact of the night's report.
"""

from __future__ import annotations

from flows.env import configure, expected_errors_without_traceback

SETTINGS = configure()

import logging  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from router import nightly as steps  # noqa: E402
from router.doctor import DoctorFailed  # noqa: E402
from router.locking import workspace_lock, writer_lock  # noqa: E402
from router.snapshots import refreshed  # noqa: E402
from router.night_report import drift_lines  # noqa: E402
from router.settings import Settings  # noqa: E402
from router.storage import NIGHTLY_WAIT_SECONDS, open_store, scalar, wait_seconds  # noqa: E402

#: The nights running in this process, by flow run id: the steps' tasks get the id, not the night (its results
#: hold fitted routers, which are no flow or task parameters).
_NIGHTS: dict[str, steps.Night] = {}


expected_errors_without_traceback()
if logging.getLogger("router").getEffectiveLevel() > logging.INFO:  # a worker's root logger is at WARNING
    logging.getLogger("router").setLevel(logging.INFO)


def _settings() -> Settings:
    return Settings()


def _flow_run_id() -> str:
    return str(flow_run.get_id() or f"local-{datetime.now(UTC):%Y%m%dT%H%M%S}")


def _embed_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """The store's prompts and the encoder's stored vectors (``nightly/embed_fingerprint``) with the encoder (its
    name and files) and representation settings: a night on the state an earlier embed step left behind (nothing
    new, nothing re-embedded meanwhile, the same encoder files) does not even open the store's plan; one after
    vectors or the encoder's files changed runs the step."""
    from router.encoder import weights_fingerprint
    from router.representation import Representation

    settings = _NIGHTS[parameters["night_id"]].settings
    key = Representation.from_settings(settings).key
    weights = weights_fingerprint(settings.encoder)
    with open_store(settings, wait=wait_seconds(NIGHTLY_WAIT_SECONDS)) as con:
        state = scalar(con, "nightly/embed_fingerprint", {"encoder": settings.encoder})
        return f"embed-{settings.encoder}-{weights}-{key}:{state}"


#: Prefect options of each step's task, by step name: retries where a failure can be transient (files, the
#: MLflow store), a timeout on the long ones, the embed step cached by the store's prompts and vectors.
TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "ingest": {"retries": 2, "retry_delay_seconds": 10, "timeout_seconds": 3600},
    "validate": {},
    "embed": {"retries": 1, "timeout_seconds": 6 * 3600, "cache_key_fn": _embed_cache_key,
              "cache_expiration": timedelta(days=30), "persist_result": True},
    "drift": {"timeout_seconds": 1800},
    "onboard": {"timeout_seconds": 1800},
    "train": {"timeout_seconds": 2 * 3600},
    "register": {"retries": 2, "retry_delay_seconds": 15, "timeout_seconds": 1800},
    "route": {"retries": 1, "retry_delay_seconds": 10, "timeout_seconds": 6 * 3600},
    "scenarios": {"retries": 1, "retry_delay_seconds": 10, "timeout_seconds": 6 * 3600},
    "report": {},
    "doctor": {},
}
if set(TASK_OPTIONS) != set(steps.STEP):
    raise RuntimeError(f"flows/nightly.py has task options for {sorted(TASK_OPTIONS)}, the library's steps are "
                       f"{[s.name for s in steps.STEPS]}")


def _step_task(step: steps.Step):
    """The step as a Prefect task: runs it on the night whose flow run id it is given."""

    def run(night_id: str) -> Any:
        result = steps.run_step(step, _NIGHTS[night_id])
        if isinstance(result, dict):  # what needs a human look, in the flow run's log
            log = get_run_logger()
            for note in result.get("notes", []):
                log.warning(note)
            for rejected in result.get("rejected", []):
                log.error("rejected: %s", rejected)
            for problem in result.get("problems", []):
                log.warning("%s: %s", step.name, problem)
        return result

    run.__name__ = run.__qualname__ = f"{step.name}_step"
    options = {"cache_policy": NO_CACHE, **TASK_OPTIONS[step.name]}
    if "cache_key_fn" in options:
        del options["cache_policy"]
    return task(name=f"{step.name}-step", **options)(run)


def _step_flow(step: steps.Step):
    """The step's sub-flow, named after it; keeps the task's result on the night (a cached task's too)."""
    run = TASKS[step.name]

    def sub(night_id: str) -> Any:
        result = run(night_id)
        _NIGHTS[night_id].results[step.name] = result
        return result

    sub.__name__ = sub.__qualname__ = step.name
    return flow(name=step.name, description=step.what)(sub)


TASKS = {step.name: _step_task(step) for step in steps.STEPS}
#: One sub-flow per step, named after it; the nightly flow runs them in the order of ``router.nightly.STEPS``.
SUBFLOWS = {step.name: _step_flow(step) for step in steps.STEPS}


def _night(flow_run_id: str | None = None, **options: Any) -> steps.Night:
    settings = _settings()
    settings.ensure_workspace()
    night = steps.Night(settings, flow_run_id or _flow_run_id(), datetime.now(UTC).replace(tzinfo=None), **options)
    _NIGHTS[night.flow_run_id] = night
    return night


# ------------------------------------------------------------------------------------- on-demand entry points
@flow(name="ingest", log_prints=True)
def ingest() -> dict[str, Any]:
    """Ingest new files from the landing folders (RouterBench, logs, backlog, prices): the nightly's first step
    alone, under the workspace lock (a nightly run holding it: the flow run fails at once, writing nothing, or
    waits ``ROUTER_STORE_WAIT_SECONDS``)."""
    night = _night()
    try:
        with writer_lock(night.settings.workspace), refreshed(night.settings):
            return TASKS["ingest"](night.flow_run_id)
    finally:
        _NIGHTS.pop(night.flow_run_id, None)


@flow(name="route_backlog")
def route_backlog(reward: str | None = None, reward_param: float | None = None, budget: float | None = None,
                  flow_run_id: str | None = None) -> dict[str, Any]:
    """Route every backlog query whose newest decision is not the champion's under this policy: the nightly's
    route step alone, under the workspace lock (as :func:`ingest`)."""
    night = _night(flow_run_id, reward=reward, reward_param=reward_param, budget=budget)
    try:
        with writer_lock(night.settings.workspace), refreshed(night.settings):
            return TASKS["route"](night.flow_run_id)
    finally:
        _NIGHTS.pop(night.flow_run_id, None)


# ------------------------------------------------------------------------------------------------ the night
@flow(name="nightly", log_prints=True)
def nightly(reward: str | None = None, reward_param: float | None = None, budget: float | None = None,
            demo: bool = False) -> dict[str, Any]:
    """The whole night: every step of ``router.nightly.STEPS`` in order, each in its sub-flow; then the report
    artifact.

    Raises :class:`~router.doctor.DoctorFailed` (the flow run ends failed) when the doctor finds problems, after
    the report (with the doctor's section) and the artifact are written.
    """
    from router.registry.promotion import versions_cached  # the steps load the champion once (MLflow: lazily)

    night = _night(reward=reward, reward_param=reward_param, budget=budget)
    try:
        with (workspace_lock(night.settings.workspace, "pipeline"), refreshed(night.settings, on_success=False),
              versions_cached()):
            if demo:
                steps.stage_demo_data(night.settings)
            for step in steps.STEPS:
                SUBFLOWS[step.name](night.flow_run_id)
    finally:
        _NIGHTS.pop(night.flow_run_id, None)
    r = night.results
    out, checked = r["report"], r["doctor"]
    create_markdown_artifact(key="nightly-report", markdown=(Path(out) / "report.md").read_text()[:90_000],
                             description=f"Nightly report {night.started.date()} ({out})")
    drift = r["drift"]
    fired = f" (breached: {', '.join(drift['fired'])})" if drift["breached"] else ""
    create_markdown_artifact(key="drift-checks", markdown="\n".join(drift_lines(drift)),
                             description=f"Drift checks {night.started.date()}{fired}")
    if not checked.get("ok"):
        raise DoctorFailed(f"the store failed its integrity checks ({'; '.join(checked.get('problems', []))}); "
                           f"see {out}/report.md")
    promotion = r["register"]
    return {"report": out, "flow_run_id": night.flow_run_id,
            "ingest": {k: r["ingest"][k] for k in ("rows_new", "rows_quarantined")},
            "training": r["train"].summary(), "promotion": {k: v for k, v in promotion.items() if k != "decision"},
            "decision": (promotion.get("decision") or {}).get("decision"), "routing": r["route"],
            "drift": {"breached": drift["breached"], "fired": drift["fired"]},
            "doctor": {"ok": checked.get("ok"), "problems": checked.get("problems", [])}}


if __name__ == "__main__":
    nightly()
