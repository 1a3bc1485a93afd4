"""``routerctl``'s entry point: the library's commands plus ``nightly``, which runs the Prefect flow.

Kept here so that the ``router`` library never imports Prefect; ``flows`` is imported only when the command
runs (``routerctl --help`` stays instant).
"""

from __future__ import annotations

import json

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


__all__ = ["app"]
