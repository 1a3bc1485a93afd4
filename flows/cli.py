"""``routerctl``'s entry point: the library's commands plus ``nightly``, which runs the Prefect flow.

Kept here so that the ``router`` library never imports Prefect; ``flows`` is imported only when the command
runs (``routerctl --help`` stays instant).
"""

from __future__ import annotations

import json

import typer

from router.cli import app
from router.cli.app import console, fail, settings


@app.command()
def nightly(
    demo: bool = typer.Option(False, "--demo", help="first copy the shipped data into the landing folders"),
    reward: str = typer.Option("linear", help="reward used to route the backlog: linear | exponential"),
    lambda_: float = typer.Option(None, "--lambda", help="reward parameter (λ for linear, τ for exponential)"),
    budget: float = typer.Option(None, "--budget", help="choose λ so the backlog's predicted spend fits this ($)"),
) -> None:
    """Run the nightly flow now: ingest → validate → embed → train → register/promote → route → report."""
    s = settings()
    from flows.env import configure

    configure(s)
    from flows.nightly import nightly as nightly_flow
    from router.locking import LockBusy

    try:
        result = nightly_flow(reward=reward, reward_param=lambda_, budget=budget, demo=demo)
    except LockBusy as exc:
        fail(str(exc), code=3)
    routing = result["routing"]
    console.print_json(json.dumps({k: result[k] for k in ("flow_run_id", "ingest", "decision")} |
                                  {"routed": routing.get("routed"), "champion": routing.get("model_version")},
                                  default=str))
    console.print(f"\nreport:   {result['report']}/report.md")
    console.print(f"store:    {s.database}  (analysts: Parquet snapshots in {s.snapshots})")
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {s.mlflow_uri} --port 5000")


__all__ = ["app"]
