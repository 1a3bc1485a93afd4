"""Prefect environment defaults, applied before Prefect is imported.

Prefect reads its settings at import time. Unless the user set them, its home goes inside the workspace,
analytics are off, the ephemeral server gets enough time to start on a small machine, and the library's
``router`` loggers are attached to Prefect runs (``PREFECT_LOGGING_EXTRA_LOGGERS``): ingest counts, gate
decisions and progress lines reach a deployed flow run's logs, not only the terminal. Setting
``PREFECT_API_URL`` (e.g. to the server in ``docker/compose.yaml``) is all it takes to run against a server.
The library's ``router`` loggers are Prefect "extra loggers" at INFO: their lines (ingest counts, the gate's
decision, ...) go to the flow run's logs on the server, not only to the console.
"""

from __future__ import annotations

import logging
import os

from router.settings import Settings, process_env_defaults


def configure(settings: Settings | None = None) -> Settings:
    settings = settings or Settings()
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.5")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "router")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")  # library use outside a run
    process_env_defaults()
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_uri)
    # a process worker imports Prefect before the flow's code: its environment sets the variable too
    # (docker/local-stack.sh, docker/compose.yaml); the level applies either way
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "router")
    logging.getLogger("router").setLevel(logging.INFO)
    return settings


class _ExpectedErrorsWithoutTraceback(logging.Filter):
    """An expected failure (:class:`~router.errors.RouterError`: bad input, busy store, ...) is logged by Prefect as
    its message alone; a traceback there would read as a bug. Bugs keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from router.errors import is_expected

        if record.exc_info and record.exc_info[1] is not None and is_expected(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


def expected_errors_without_traceback() -> None:
    """Have Prefect log the flow and task runs' expected failures without their traceback (the nightly's flows and
    the Dask flows of ``flows/scale.py``); called after Prefect is imported, once or more."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ExpectedErrorsWithoutTraceback) for f in logger.filters):
            logger.addFilter(_ExpectedErrorsWithoutTraceback())


def stop_ephemeral_server() -> None:
    """Stop the temporary Prefect server this process started, if any, now rather than at interpreter exit
    (where its shutdown logs to streams already closed: "I/O operation on closed file"). The flows' queued logs
    and events are sent first, while the server can take them: sent at exit, after it stopped, they failed with
    "--- Error logging to API --- All connection attempts failed" under the run's summary."""
    import sys

    module = sys.modules.get("prefect.server.api.server")
    if module is None:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=30)
    for server in list(module.SubprocessASGIServer._instances.values()):
        server.stop()
