"""The library's log lines reach a Prefect flow run's logs (what an operator reads in the UI of a deployed
run), not only the terminal: ``flows.env`` attaches the ``router`` loggers to Prefect runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import json, sys, time
from flows.nightly import ingest
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

state = ingest(return_state=True)
run_id = state.state_details.flow_run_id
from flows.env import stop_ephemeral_server
# Prefect ships run logs to its API from a background worker, in batches: on a busy machine the last batch can
# arrive after the flow returns, so read until the library's line is there (at most 60 s).
deadline = time.monotonic() + 60
with get_client(sync_client=True) as client:
    while True:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        if any(log.name == "router.ingest" for log in logs) or time.monotonic() > deadline:
            break
        time.sleep(1)
stop_ephemeral_server()
print(json.dumps([[log.name, log.message] for log in logs]))
"""


@pytest.mark.slow
def test_library_log_lines_are_in_the_flow_runs_logs(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    landing = home / "landing" / "logs"
    landing.mkdir(parents=True)
    data = Path(__file__).resolve().parents[1] / "data" / "demo" / "logs.jsonl"
    (landing / "logs.jsonl").write_text("".join(data.read_text().splitlines(keepends=True)[:20]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MLFLOW_", "PREFECT_"))}
    env |= {"ROUTER_HOME": str(home), "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    logs = json.loads(proc.stdout.strip().splitlines()[-1])
    ingested = [m for name, m in logs if name == "router.ingest"]
    assert len(ingested) == 1 and f"ingested {landing / 'logs.jsonl'}: 20 in, 20 ok (20 new)" in ingested[0], logs
    assert "I/O operation on closed file" not in proc.stderr


CHATTY = """
from prefect import flow, get_run_logger
from flows.env import stop_ephemeral_server

@flow
def chatty():
    for i in range(50):
        get_run_logger().info("line %d", i)

try:
    chatty()
finally:
    stop_ephemeral_server()
print("stopped", flush=True)
"""


def _run_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``script`` run by this Python in a fresh workspace and Prefect home under ``tmp_path``."""
    return _run_python(["-c", script], tmp_path)


def _run_python(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """This Python with ``args``, from the checkout's root, in a fresh workspace and Prefect home under
    ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MLFLOW_", "PREFECT_"))}
    env |= {"ROUTER_HOME": str(tmp_path / "ws"), "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])


def test_stopping_the_ephemeral_server_sends_the_queued_logs_first(tmp_path: Path) -> None:
    """A flow's last log lines are still queued when it returns: stopped without sending them, the server could not
    take them at exit, and a clean `routerctl nightly` ended with "--- Error logging to API ---"."""
    proc = _run_script(CHATTY, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("stopped"), proc.stderr[-4000:]
    assert "Error logging to API" not in proc.stderr + proc.stdout
    assert "I/O operation on closed file" not in proc.stderr


BUSY = """
from flows.scale import embed_distributed
from flows.env import stop_ephemeral_server
from router.locking import workspace_lock
from router.settings import Settings

with workspace_lock(Settings().workspace):  # another run holds the workspace
    try:
        state = embed_distributed(chunks=2, return_state=True)
    finally:
        stop_ephemeral_server()
print("failed" if state.is_failed() else "not failed", flush=True)
"""


def test_a_distributed_flow_logs_an_expected_failure_without_its_traceback(tmp_path: Path) -> None:
    """A Dask flow started while another run holds the workspace fails with the lock's message alone in its run's
    logs, as the nightly's flows do: a traceback there reads as a bug."""
    proc = _run_script(BUSY, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "failed", proc.stderr[-4000:]
    assert "another run holds" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-4000:]


def test_the_scale_out_script_on_a_busy_workspace_says_so_in_one_line_and_exits_3(tmp_path: Path) -> None:
    """``python -m flows.scale`` while another run holds the workspace: the lock's message in one line and exit 3,
    as ``routerctl`` gives it, instead of a traceback and exit 1."""
    from router.locking import workspace_lock

    with workspace_lock(tmp_path / "ws"):  # another run holds the workspace
        proc = _run_python(["-m", "flows.scale", "embed", "--chunks", "1", "--workers", "1"], tmp_path)
    assert proc.returncode == 3, proc.stderr[-4000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: another run holds "), proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr and "Error logging to API" not in proc.stderr, proc.stderr[-4000:]
