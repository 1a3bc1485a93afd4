"""``routerctl``'s entry point: the library's commands plus ``nightly``, which runs the Prefect flow, and
``bench``, which runs the checkout's benchmarks (``bench/``, developer tooling outside the library).

Kept here so that the ``router`` library never imports Prefect nor ``bench``; ``flows`` is imported only when
the command runs (``routerctl --help`` stays instant).
"""

from __future__ import annotations

import json
import subprocess
import sys

import typer

from router.cli import app
from router.cli.app import console, fail, settings
from router.cli.pipeline import check_reward
from router.redact import mask_uri


@app.command()
def nightly(
    demo: bool = typer.Option(False, "--demo", help="first copy the shipped data into the landing folders"),
    reward: str = typer.Option(None, help="reward used to route the backlog: linear | exponential "
                                "(default: ROUTER_ROUTE_REWARD, linear)"),
    lambda_: float = typer.Option(None, "--lambda", help="reward parameter (λ for linear, τ for exponential)"),
    budget: float = typer.Option(None, "--budget", help="choose λ so the backlog's predicted spend fits this ($)"),
) -> None:
    """Run the nightly flow now: ingest → validate → embed → train → register/promote → route → report → doctor.

    Exits 3 if another run holds the workspace, 4 if the run finished but the store failed its doctor checks.
    """
    check_reward(reward)
    s = settings()
    from router.locking import holder

    busy = holder(s.workspace, "pipeline")
    if busy:  # refuse before the (slow) Prefect start; the flow takes the lock itself for the whole run
        fail(f"another run holds {s.workspace / 'pipeline.lock'} ({busy}); nothing was done: try again when it "
             "finishes", code=3)
    from flows.env import configure

    configure(s)
    from flows.nightly import nightly as nightly_flow
    from router.doctor import DoctorFailed
    from router.locking import LockBusy

    try:
        result = nightly_flow(reward=reward, reward_param=lambda_, budget=budget, demo=demo)
    except LockBusy as exc:
        fail(str(exc), code=3)
    except DoctorFailed as exc:  # the run finished and wrote its report; the store failed its checks
        fail(str(exc), code=4)
    routing = result["routing"]
    console.print_json(json.dumps({k: result[k] for k in ("flow_run_id", "ingest", "decision")} |
                                  {"routed": routing.get("routed"), "champion": routing.get("model_version")},
                                  default=str))
    console.print(f"\nreport:   {result['report']}/report.md")
    console.print(f"store:    {s.database}  (analysts: Parquet snapshots in {s.snapshots})")
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {mask_uri(s.mlflow_uri)} --port 5000")



@app.command()
def bench(
    size: str = typer.Option("full", help="small (CI smoke, ~2 min) | full (~15 min on 2 cores)"),
    only: list[str] = typer.Option(None, "--only", help="run only this bench (repeatable): embed, route, "
                                   "route_attention, ingest_jsonl, ingest_parquet, nightly, train"),
) -> None:
    """Run a checkout's benchmarks (python -m bench.perf); print one line per figure; write
    $ROUTER_HOME/reports/bench/latest.json."""
    from router.settings import PROJECT_ROOT

    if not (PROJECT_ROOT / "bench" / "perf.py").is_file():
        fail(f"routerctl bench runs the benchmarks of a source checkout; this install has no bench/ folder "
             f"({PROJECT_ROOT / 'bench'})")
    s = settings()
    argv = [sys.executable, "-m", "bench.perf", "--size", size, "--out", str(s.reports / "bench" / "latest.json")]
    for name in only or []:
        argv += ["--only", name]
    raise typer.Exit(subprocess.run(argv, cwd=PROJECT_ROOT, check=False).returncode)


__all__ = ["app"]
