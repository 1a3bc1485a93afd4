"""What a night's routing saved: predicted spend against the best single model, and realized quality and cost
wherever the routed queries' outcomes are stored.

The reference is the champion's best single model (its quality-target calibration's ``reference_model``).
Predicted figures come from the router's own cost head for every routed query (chosen model vs reference);
the cost head's predictions are rescaled by the night's price factors (``router.prices``), so a price change is
in the predicted spend of the chosen and the reference model alike; realized figures come from stored outcomes (production logs of the query, else the RouterBench rows of its
prompt) for the routed queries that have an outcome for both the chosen and the reference model
(``sql/queries/savings/realized.sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from router.policy import NOISE_Z
from router.storage import relation

__all__ = ["headline", "realized", "section"]


def realized(con: duckdb.DuckDBPyConnection, *, flow_run_ids: Sequence[str], version: str, reference: str
             ) -> dict[str, Any]:
    """Realized figures of the decisions ``version`` made in the routing runs ``flow_run_ids`` (a night's: its
    run and the earlier runs of the night): ``routed``, ``queries`` (with both outcomes stored), ``quality`` /
    ``reference_quality`` (means) and ``cost_usd`` / ``reference_cost_usd`` (sums)."""
    frame = relation(con, "savings/realized", {"flow_run_ids": list(flow_run_ids), "version": version,
                                               "reference": reference}).pl()
    return frame.row(0, named=True)


def _share(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return part / whole


def headline(routing: dict[str, Any], outcomes: dict[str, Any] | None) -> str:
    """The one sentence the nightly report opens with."""
    if routing.get("model_version") is None:
        return f"The backlog was not routed tonight ({routing.get('reason', 'no champion')})."
    if not routing.get("routed"):
        return "No backlog queries were waiting for routing tonight: nothing new was spent or saved."
    reference = routing.get("reference_model")
    if reference is None:
        return (f"Routed {routing['routed']} queries for a predicted ${routing['predicted_spend_usd']:.4f}; the "
                "champion names no best single model to compare with (it has no quality-target calibration).")
    if outcomes and outcomes.get("queries"):
        quality = _share(outcomes["quality"], outcomes["reference_quality"])
        cost = _share(outcomes["cost_usd"], outcomes["reference_cost_usd"])
        if quality is not None and cost is not None:
            return (f"Routing kept {quality:.0%} of {reference}'s quality at {cost:.0%} of its cost on the "
                    f"{outcomes['queries']} routed queries with stored outcomes.")
        # the reference scored or cost nothing there: no ratio, so the figures themselves
        return (f"On the {outcomes['queries']} routed queries with stored outcomes the chosen models scored "
                f"{outcomes['quality']:.4f} (mean quality) for ${outcomes['cost_usd']:.4f}, {reference} "
                f"{outcomes['reference_quality']:.4f} for ${outcomes['reference_cost_usd']:.4f}.")
    predicted = _share(routing.get("predicted_spend_usd"), routing.get("reference_spend_usd"))
    spend = "" if predicted is None else f" at a predicted {predicted:.0%} of {reference}'s cost"
    return f"Routed {routing['routed']} queries{spend}; none has stored outcomes to check the quality against."


def section(routing: dict[str, Any], outcomes: dict[str, Any] | None) -> list[str]:
    """The report's "What routing saved" section (Markdown lines)."""
    lines = ["## What routing saved", ""]
    if routing.get("model_version") is None or not routing.get("routed"):
        return [*lines, headline(routing, outcomes), ""]
    policy = routing.get("policy") or {}
    kind = policy.get("kind")
    if kind == "quality_target":
        how = "reached" if policy.get("reached") else "NOT reached (best calibrated quality used)"
        if policy.get("reached") and policy["quality_ratio"] < policy["quality_target"]:
            how += f" within {NOISE_Z:g} standard errors ({policy.get('quality_se', 0.0):.3f}) of it"
        param = f"{routing['reward_param']:.4g}"
        if routing.get("mix_param") is not None:
            param = (f"{param} for {1.0 - routing['mix_share']:.0%} of prompts and {routing['mix_param']:.4g} for "
                     f"{routing['mix_share']:.0%} (by prompt hash)")
        lines.append(f"- policy: quality target {policy['quality_target']:g} × {policy['reference_model']} "
                     f"({how} on cross-fitted train predictions: quality ratio {policy['quality_ratio']:.3f} at "
                     f"cost ratio {policy['cost_ratio']:.3f}), {routing['reward']} parameter {param}")
        test = policy.get("test") or {}
        if test:
            lines.append(f"- that policy on the test split ({test['rows']} prompts): quality ratio "
                         f"{test['quality_ratio']:.3f} at cost ratio {test['cost_ratio']:.3f} vs "
                         f"{test['reference_model']}")
    elif kind == "budget":
        lines.append(f"- policy: budget ${routing['budget_usd']:.2f}, {routing['reward']} parameter "
                     f"{routing['reward_param']:.4g}")
    else:
        reason = f" ({policy['reason']})" if policy.get("reason") else ""
        lines.append(f"- policy: fixed {routing['reward']} parameter {routing['reward_param']:.4g}{reason}")
    factors = routing.get("price_factors") or {}
    if factors:
        lines.append("- price changes since training: predicted costs rescaled by "
                     + ", ".join(f"{m} ×{f:.4g}" for m, f in sorted(factors.items())))
    reference = routing.get("reference_model")
    if reference and routing.get("reference_spend_usd") is not None:
        lines.append(f"- predicted spend ${routing['predicted_spend_usd']:.4f} vs ${routing['reference_spend_usd']:.4f}"
                     f" had every routed query gone to {reference} (same cost head)")
    mix = routing.get("model_mix") or {}
    if mix:
        total = sum(mix.values())
        lines.append("- model mix: " + ", ".join(f"{m} {n} ({n / total:.0%})" for m, n in mix.items()))
    if reference and outcomes is not None:
        n = outcomes.get("queries") or 0
        lines.append(f"- stored outcomes for {n} of the {outcomes.get('routed', 0)} routed queries")
        if n:
            lines += ["", "| on the queries with stored outcomes | mean quality | total cost ($) |",
                      "|---|---:|---:|",
                      f"| routed (chosen models) | {outcomes['quality']:.4f} | {outcomes['cost_usd']:.4f} |",
                      f"| {reference} for every query | {outcomes['reference_quality']:.4f} "
                      f"| {outcomes['reference_cost_usd']:.4f} |"]
    return [*lines, ""]
