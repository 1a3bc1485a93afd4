"""The server stack for tests: ``docker/local-stack.sh`` started in a temp folder, and what tests ask of it.

:class:`Stack` runs the script (the same commands a person runs, docs/pipeline.md) with ``LOCAL_STACK_DIR`` in a
temp folder, reads its ``env`` output, and gives tests subprocess environments for a workspace against the
servers. Prefect and MLflow are only ever spoken to from subprocesses (this file run as a script, ``prefect``,
``routerctl``), so the pytest process keeps no client state pointing at servers that are gone after the module.

    python tests/stack.py flow-run ID     # JSON: the run, its sub-flow runs (states) and all their log lines
    python tests/stack.py crash ID        # mark a run whose process was killed as Crashed (frees its slot)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docker" / "local-stack.sh"
BIN = Path(sys.executable).parent


#: The stack's nights run on a small slice, where a batch of new prompts (the demo backlog's next rows are all
#: arc-challenge) breaches the drift checks, which marks the night and warns in the doctor; these tests are about the
#: servers and their faults, so the prompt checks never breach here (tests/test_drift.py tests them).
QUIET_DRIFT = {"ROUTER_DRIFT_EMBEDDING_P": "1e-9", "ROUTER_DRIFT_TASK_TVD": "1"}


class Stack:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.vars: dict[str, str] = {}
        self.started_pids: set[int] = set()

    # ------------------------------------------------------------------------------------------ lifecycle
    def _script(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "PREFECT_", "MLFLOW_"))}
        env.update(LOCAL_STACK_DIR=str(self.folder), VENV=str(BIN.parent), PYTHONPATH=str(ROOT),
                   PATH=f"{BIN}:{env['PATH']}", **QUIET_DRIFT)  # the worker it starts inherits them
        return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    def up(self) -> None:
        proc = self._script("up")
        assert proc.returncode == 0, f"local-stack.sh up failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        out = self._script("env").stdout
        self.vars = dict(re.findall(r"^export (\w+)='([^']*)'$", out, flags=re.M))
        assert {"ROUTER_MLFLOW_TRACKING_URI", "PREFECT_API_URL", "ROUTER_HOME"} <= set(self.vars), out
        self.started_pids = self.pids()
        # the `nightly` deployment's cron (02:00 UTC) must not start a run in the middle of a test
        self.run(str(BIN / "prefect"), "deployment", "schedule", "pause", "--all", timeout=120)

    def down(self) -> subprocess.CompletedProcess:
        return self._script("down", timeout=120)

    def restart_worker(self) -> None:
        proc = self._script("worker", timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        self.started_pids |= self.pids()

    def pids(self) -> set[int]:
        """Every process of the stack now: each started process's whole tree, and the PostgreSQL server's."""
        import psutil

        roots = [int(p.read_text()) for p in (self.folder / "pids").glob("*.pid")]
        postmaster = self.folder / "pg" / "data" / "postmaster.pid"
        if postmaster.exists():
            roots.append(int(postmaster.read_text().split()[0]))
        found: set[int] = set()
        for pid in roots:
            try:
                proc = psutil.Process(pid)
                found |= {pid} | {c.pid for c in proc.children(recursive=True)}
            except psutil.NoSuchProcess:
                continue
        return found

    def kill_tree(self, name: str) -> set[int]:
        """SIGKILL the started process ``name`` (e.g. ``worker``, ``dask-worker-1``) and all its descendants."""
        import psutil

        pid = int((self.folder / "pids" / f"{name}.pid").read_text())
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        return {p.pid for p in procs}

    # -------------------------------------------------------------------------------------------- clients
    def env(self, home: Path | None = None, **extra: str) -> dict[str, str]:
        """A subprocess environment against the servers (workspace ``home``, default the worker's)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "PREFECT_", "MLFLOW_"))}
        env.update(self.vars, PYTHONPATH=str(ROOT), PATH=f"{BIN}:{env['PATH']}", **QUIET_DRIFT)
        env.update(extra)
        if home is not None:
            env["ROUTER_HOME"] = str(home)
        return env

    def run(self, *args: str, home: Path | None = None, timeout: int = 600, check: bool = True,
            **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(args), env=self.env(home), capture_output=True, text=True, timeout=timeout,
                              cwd=kwargs.pop("cwd", self.folder), **kwargs)
        if check:
            assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        return proc

    def trigger(self, deployment: str = "nightly/nightly-on-demand", watch: bool = True) -> str:
        """Start a run of ``deployment`` (the worker picks it up); with ``watch``, wait for its end. Its id."""
        args = [str(BIN / "prefect"), "deployment", "run", deployment] + (["--watch"] if watch else [])
        proc = self.run(*args, timeout=900, check=False)
        found = re.search(r"UUID: ([0-9a-f-]{36})", proc.stdout)
        assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
        if watch:
            assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        return found.group(1)

    def flow_run(self, run_id: str) -> dict:
        proc = self.run(sys.executable, __file__, "flow-run", run_id, timeout=120)
        return json.loads(proc.stdout)

    def crash(self, run_id: str) -> None:
        self.run(sys.executable, __file__, "crash", run_id, timeout=120)

    def wait_for(self, run_id: str, predicate, timeout: float = 300, poll: float = 1.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            info = self.flow_run(run_id)
            if predicate(info):
                return info
            assert time.monotonic() < deadline, info
            time.sleep(poll)


# ------------------------------------------------------------------------------------ run as a script
async def _flow_run(run_id: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterParentFlowRunId, LogFilter,
                                                LogFilterFlowRunId)
    from prefect.client.schemas.sorting import LogSort

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        subs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
        ids = [run.id, *(s.id for s in subs)]
        logs, offset = [], 0
        while True:
            page = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200,
                                          offset=offset, sort=LogSort.TIMESTAMP_ASC)
            logs += page
            offset += len(page)
            if len(page) < 200:
                break
        flows = {f.id: f.name for f in await client.read_flows()}
        return {"id": str(run.id), "state": run.state_type.value, "deployment_id": str(run.deployment_id),
                "subflows": {flows.get(s.flow_id, str(s.flow_id)): s.state_type.value for s in subs},
                "logs": [{"name": log.name, "level": log.level, "message": log.message} for log in logs]}


async def _crash(run_id: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    async with get_client() as client:
        await client.set_flow_run_state(run_id, Crashed(message="its process was killed"), force=True)


if __name__ == "__main__":
    import asyncio

    command, run_id = sys.argv[1:3]
    if command == "flow-run":
        print(json.dumps(asyncio.run(_flow_run(run_id))))
    elif command == "crash":
        asyncio.run(_crash(run_id))
