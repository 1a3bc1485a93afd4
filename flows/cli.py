"""``routerctl``'s entry point: the library's commands plus ``nightly``, which runs the Prefect flow, and
``bench``, which runs the checkout's benchmarks (``bench/``, developer tooling outside the library).

Kept here so that the ``router`` library never imports Prefect nor ``bench``; ``flows`` is imported only when
the command runs (``routerctl --help`` stays instant).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from enum import Enum

import typer

from router.cli import app
from router.cli.app import console, fail, positive, settings
from router.cli.pipeline import Reward
from router.errors import BAD_INPUT, RouterError, Unreachable
from router.redact import mask_uri


def _first_run_check(s) -> None:
    """On a workspace with nothing to work on (no file in any landing folder, no stored prompt), create the
    landing folders and say where files go (exit 2) instead of starting Prefect for a run that cannot train."""
    from router.nightly import LANDING_KINDS

    folders = [s.landing(kind) for kind in LANDING_KINDS]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    if any(p.is_file() for folder in folders for p in folder.rglob("*")):
        return
    if s.database.exists():
        from router.storage import open_store, table_counts

        with open_store(s, read_only=True) as con:
            if table_counts(con).get("prompts"):
                return
    listed = "\n".join(f"  {folder}" for folder in folders)
    raise RouterError(f"nothing to work on in {s.workspace}: the landing folders are empty and the store holds no "
                      f"prompts. Put RouterBench files, production logs, backlog files (and price tables) in\n{listed}\nor try "
                      "`routerctl nightly --demo` (copies the shipped data there first)", code=BAD_INPUT)


def _check_prefect_server() -> None:
    """With ``PREFECT_API_URL`` set, fail (exit 4) at once unless that server answers its health check."""
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if not url:
        return  # an ephemeral server is started in-process
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        raise Unreachable(f"the Prefect server at {mask_uri(url)} does not answer ({exc}); nothing was done. "
                          "Start it, or unset PREFECT_API_URL to run on a temporary local server") from None


@app.command()
def nightly(
    demo: bool = typer.Option(False, "--demo", help="first copy the shipped data into the landing folders"),
    reward: Reward = typer.Option(None, help="reward used to route the backlog (default: ROUTER_ROUTE_REWARD, "
                                  "linear)"),
    lambda_: float = typer.Option(None, "--lambda", callback=positive,
                                  help="reward parameter (λ for linear, τ for exponential; > 0)"),
    budget: float = typer.Option(None, "--budget", callback=positive,
                                 help="choose λ so the backlog's predicted spend fits this ($, > 0)"),
) -> None:
    """Run the nightly flow now: every step of ``router.nightly.STEPS`` in order (docs/pipeline.md).

    Exits 2 on an empty workspace (naming the landing folders), 3 if another run holds the workspace, 4 if the
    Prefect server is unreachable, 1 if the run finished but the store failed its doctor checks.
    """
    s = settings()
    from router.locking import LockBusy, holder

    busy = holder(s.workspace, "pipeline")
    if busy:  # refuse before the (slow) Prefect start; the flow takes the lock itself for the whole run
        raise LockBusy(f"another run holds {s.workspace / 'pipeline.lock'} ({busy}); nothing was done: try again "
                       "when it finishes")
    if demo:
        from router.nightly import stage_demo_data

        stage_demo_data(s)
    _first_run_check(s)
    from flows.env import configure, stop_ephemeral_server

    configure(s)
    _check_prefect_server()
    from flows.nightly import nightly as nightly_flow

    try:
        result = nightly_flow(reward=reward and reward.value, reward_param=lambda_, budget=budget, demo=demo)
    finally:
        stop_ephemeral_server()
    routing = result["routing"]
    console.print_json(json.dumps({k: result[k] for k in ("flow_run_id", "ingest", "decision")} |
                                  {"routed": routing.get("routed"), "champion": routing.get("model_version")},
                                  default=str))
    console.print(f"\nreport:   {result['report']}/report.md")
    console.print(f"store:    {s.database}  (analysts: Parquet snapshots in {s.snapshots})")
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {mask_uri(s.mlflow_uri)} --port 5000")



class Size(str, Enum):
    small = "small"
    full = "full"


@app.command()
def bench(
    size: Size = typer.Option("full", help="small: CI smoke, ~2 min; full: ~15 min on 2 cores"),
    only: list[str] = typer.Option(None, "--only", help="run only this bench (repeatable): embed, encoder_backends, "
                                   "embed_subset, route, route_attention, ingest_jsonl, ingest_parquet, nightly, "
                                   "train, or a figure's name (docs/performance.md)"),
) -> None:
    """Run a checkout's benchmarks (python -m bench.perf); print one line per figure; write
    $ROUTER_HOME/reports/bench/latest.json."""
    from router.settings import PROJECT_ROOT

    if not (PROJECT_ROOT / "bench" / "perf.py").is_file():
        fail(f"routerctl bench runs the benchmarks of a source checkout; this install has no bench/ folder "
             f"({PROJECT_ROOT / 'bench'})")
    s = settings()
    argv = [sys.executable, "-m", "bench.perf", "--size", size.value, "--out", str(s.reports / "bench" / "latest.json")]
    for name in only or []:
        argv += ["--only", name]
    raise typer.Exit(subprocess.run(argv, cwd=PROJECT_ROOT, check=False).returncode)


__all__ = ["app"]

if __name__ == "__main__":
    app()
