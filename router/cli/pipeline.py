"""Train-and-evaluate command: reproduce the RouterBench table on any RouterBench-format folder."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from router.champion import NO_CHAMPION
from router.cli.app import (app, console, err_console, existing_store, fail, positive, print_table, settings,
                            writing)
from router.rewards import REWARDS

#: The registered rewards (``router.rewards.REWARDS``), as a choice.
Reward = Enum("Reward", {name: name for name in sorted(REWARDS)}, type=str)


def print_metrics(metrics: dict, title: str) -> None:
    table = Table("router", "AIQ", "max perf", "cost at max perf ($)", title=title)
    rows = sorted(metrics["routers"].items(), key=lambda kv: -kv[1]["aiq"])
    for name, m in rows:
        table.add_row(name, f"{m['aiq']:.4f}", f"{m['max_perf']:.4f}", f"{m['max_perf_cost']:.4f}")
    best = metrics["best_single_model"]
    table.caption = f"best single model: {best['name']} (perf {best['perf']:.4f}, cost ${best['cost']:.4f})"
    print_table(table)
    pooled = metrics.get("pooled")
    if pooled:
        best = pooled["best_single_model"]
        table = Table("router", "AIQ", "max perf", "cost ratio at best quality", "cost ratio at 95%",
                      "quality at half cost", title=f"{title}: whole test split as one backlog")
        for name, m in sorted(pooled["routers"].items(), key=lambda kv: -kv[1]["aiq"]):
            table.add_row(name, f"{m['aiq']:.4f}", f"{m['max_perf']:.4f}",
                          *("never" if m[k] is None else f"{m[k]:.3f}"
                            for k in ("cost_ratio_at_best_quality", "cost_ratio_at_95")),
                          "–" if m["quality_at_half_cost"] is None else f"{m['quality_at_half_cost']:.4f}")
        table.caption = f"best single model: {best['name']} (perf {best['perf']:.4f}, cost ${best['cost']:.4f})"
        print_table(table)


@app.command()
def evaluate(
    data: list[Path] = typer.Option(None, "--data", help="RouterBench-format files/folders to ingest first"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="unpickle .pkl files found in --data folders"),
) -> None:
    """Ingest (optional), embed, train every router and evaluate them with the RouterBench protocol.

    Writes metrics.json, curves and report.md under $ROUTER_HOME/reports/<run_id>/ and reports/latest/.
    """
    from router.embeddings import embed_missing
    from router.ingest import IngestError, discover, ingest_files
    from router.pipeline import train_and_evaluate
    from router.storage import open_store

    s = settings()
    with writing(s), open_store(s) as con:
        if data:
            files, _ = discover(list(data), "routerbench", allow_pickle=allow_pickle or s.allow_pickle)
            for path, r in ingest_files(con, "routerbench", files, s):
                if isinstance(r, IngestError):
                    raise r  # the files before it are stored; this one changed nothing
                console.print(f"{path.name}: {r.status} ({r.rows_new} new, {r.rows_quarantined} quarantined)")
        e = embed_missing(con, s)
        console.print(f"embedded {e.embedded} new prompts ({e.already} cached)")
        run = train_and_evaluate(con, s, dataset=", ".join(map(str, data)) if data else str(s.database))
    print_metrics(run.metrics, f"RouterBench protocol, {run.train.n} train / {run.test.n} test prompts")
    console.print(f"report: {run.report_dir}/report.md (also {s.reports / 'latest'})")


@app.command()
def route(
    reward: Reward = typer.Option(None, help="reward (default: ROUTER_ROUTE_REWARD, linear)"),
    lambda_: float = typer.Option(None, "--lambda", callback=positive, help="reward parameter (λ for linear, τ "
                                  "for exponential; > 0); overrides the quality target (--lambda 1e9: always the "
                                  "best predicted model)"),
    budget: float = typer.Option(None, "--budget", callback=positive,
                                 help="choose λ so the predicted spend of the backlog fits (USD, > 0)"),
    quality_target: float = typer.Option(None, "--quality-target", callback=positive,
                                         help="the cheapest λ whose calibrated pooled quality reaches this × the "
                                         "best single model's (> 0; default: ROUTER_ROUTE_QUALITY_TARGET, 1.0)"),
    exclude_model: list[str] = typer.Option(None, "--exclude-model", help="never route to this model (repeatable; "
                                            "default: ROUTER_POOL_EXCLUDE); the decisions' policy records it"),
) -> None:
    """Route every backlog query whose newest decision is not the champion's under this policy (new queries; all
    after a new champion, new prices or another policy); decisions go to routing_decisions.

    Default policy: a quality target, read off the champion's calibration (see docs/rewards.md)."""
    from router.nightly import route as route_step

    if sum(v is not None for v in (lambda_, budget, quality_target)) > 1:
        fail("give one of --lambda, --budget, --quality-target")
    s = existing_store()
    with writing(s):
        summary = route_step(s, reward=reward and reward.value, reward_param=lambda_, budget=budget,
                             quality_target=quality_target, exclude=exclude_model or None)
    if summary.get("model_version") is None:
        fail(NO_CHAMPION)
    if summary.get("champion_moved"):
        err_console.print(f"[yellow]recorded in champion_history[/]: {summary['champion_moved']}")
    table = Table("model", "queries", title=(
        f"routed {summary['routed']} queries with champion v{summary['model_version']} "
        f"({summary['reward']}, parameter {summary['reward_param']:.4g}"
        + (f", {summary['mix_param']:.4g} for {summary['mix_share']:.0%} of prompts"
           if summary.get("mix_param") is not None else "") + ")"))
    for model, n in summary["model_mix"].items():
        table.add_row(model, str(n))
    table.caption = route_caption(summary)
    print_table(table)
    if summary.get("price_factors"):
        console.print("predicted costs rescaled by price changes since training: "
                      + ", ".join(f"{m} ×{f:.4g}" for m, f in sorted(summary["price_factors"].items()))
                      + " (routerctl prices)")
    policy = summary.get("policy") or {}
    if policy.get("kind") == "quality_target":
        from router.policy import Choice

        console.print(Choice(**{k: policy[k] for k in Choice.__dataclass_fields__}).describe())
    elif policy.get("reason"):
        console.print(f"quality end of the sweep: {policy['reason']}")


def route_caption(summary: dict) -> str:
    """The route table's caption: predicted spend (and budget), mean predicted quality; "–" when nothing was routed
    (every backlog query already had this version's and policy's decision)."""
    spend = f"predicted spend ${summary['predicted_spend_usd']:.4f}"
    if summary.get("budget_usd") is not None:
        spend += f" within budget ${summary['budget_usd']:.4f}"
    quality = summary.get("predicted_quality")
    shown = f"{quality:.4f}" if quality is not None and math.isfinite(quality) else "–"
    return f"{spend}; mean predicted quality {shown}"


@app.command()
def scenarios(
    reward: Reward = typer.Option(None, help="reward (default: ROUTER_ROUTE_REWARD, linear)"),
    exclude_model: list[str] = typer.Option(None, "--exclude-model", help="what if this model were never routed "
                                            "to (repeatable; default: ROUTER_POOL_EXCLUDE)"),
) -> None:
    """What-if routing for analysts: predicted spend, quality and model mix of the pending (else whole) backlog at
    every value of the reward's sweep; writes routing_scenarios (no decisions), a Parquet snapshot and a PNG."""
    from router.scenarios import backlog_queries, scenarios_step

    s = existing_store()
    with writing(s):
        summary = scenarios_step(s, reward=reward and reward.value, exclude=exclude_model or None)
    if summary.get("model_version") is None:
        fail(NO_CHAMPION)
    console.print(f"scenario run {summary['run_id']}: {summary['points']} points for "
                  f"{backlog_queries(summary['queries'], summary['backlog'])} "
                  f"(champion v{summary['model_version']}, {summary['reward']})")
    console.print(f"plot: {summary['plot']}; view latest_scenarios, snapshot "
                  f"{s.snapshots / 'latest_scenarios.parquet'}")
