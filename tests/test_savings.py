"""What a night's routing saved (router.savings): realized figures from stored outcomes, and the report's words."""

from __future__ import annotations

import pytest

from router import savings
from router.policy import NOISE_Z

# RouterBench rows i = 0..3 (conftest): prompt "Question number i?", score (i + j) % 2 and cost (j + 1) / 1000
# for model j: alpha-7b [0, 1, 0, 1] at .001, beta/chat-v2 [1, 0, 1, 0] at .002, gamma [0, 1, 0, 1] at .003.
# Backlog q-i asks the same prompts; q-4 has no outcome; q-5 has production logs for alpha (0.5, .004) and beta
# (1.0, .02). Tonight ("night-1", version 1) chose: q-0 beta, q-1 alpha, q-2 beta, q-3 alpha, q-4 alpha, q-5 alpha.
# Against beta (the reference) on the 5 queries with both outcomes:
#   chosen quality (1 + 1 + 1 + 1 + .5) / 5 = .9, cost .002 + .001 + .002 + .001 + .004 = .010;
#   beta quality (1 + 0 + 1 + 0 + 1) / 5 = .6, cost 4 · .002 + .02 = .028.
CHOSEN = {"q-0": "beta/chat-v2", "q-1": "alpha-7b", "q-2": "beta/chat-v2", "q-3": "alpha-7b", "q-4": "alpha-7b",
          "q-5": "alpha-7b"}


@pytest.fixture
def night(store, ingest, files):  # noqa: ANN001, ANN201
    ingest("routerbench", files.routerbench("bench_test.csv"))
    ingest("logs", files.logs(records=[
        files.log_record(5, request_id="q-5", prompt="Log prompt 5", model="alpha-7b", quality=0.5, cost_usd=0.004),
        files.log_record(6, request_id="q-5", prompt="Log prompt 5", model="beta/chat-v2", quality=1.0,
                         cost_usd=0.02),
    ]))
    records = [files.backlog_record(i, prompt=f"Question number {i}?") for i in range(4)]
    records += [files.backlog_record(4), files.backlog_record(5, prompt="Log prompt 5")]
    ingest("backlog", files.backlog(records=records))
    rows = [(q, "1", "night-1", m) for q, m in CHOSEN.items()] + [("q-0", "0", "night-0", "gamma")]
    for query_id, version, flow_run, model in rows:
        store.execute("INSERT INTO routing_decisions VALUES (?, ?, 'r', ?, 0.5, 0.001, 'linear', 1.0, 0.0, NULL, ?, "
                      "now()::TIMESTAMP, 'lambda=1')", [query_id, version, model, flow_run])
    return store


def test_realized_figures_by_hand(night) -> None:  # noqa: ANN001
    got = savings.realized(night, flow_run_ids=["night-1"], version="1", reference="beta/chat-v2")
    assert got == pytest.approx({"routed": 6, "queries": 5, "quality": 0.9, "cost_usd": 0.010,
                                 "reference_quality": 0.6, "reference_cost_usd": 0.028})
    none = savings.realized(night, flow_run_ids=["night-9"], version="1", reference="beta/chat-v2")
    assert none["routed"] == 0 and none["queries"] == 0


def test_headline_and_section(night) -> None:  # noqa: ANN001
    outcomes = savings.realized(night, flow_run_ids=["night-1"], version="1", reference="beta/chat-v2")
    routing = {"model_version": "1", "routed": 6, "reward": "linear", "reward_param": 7500.0,
               "predicted_spend_usd": 0.01, "reference_model": "beta/chat-v2", "reference_spend_usd": 0.04,
               "model_mix": {"alpha-7b": 4, "beta/chat-v2": 2},
               "policy": {"kind": "quality_target", "quality_target": 1.0, "reference_model": "beta/chat-v2",
                          "reached": True, "quality_ratio": 1.01, "cost_ratio": 0.6,
                          "test": {"rows": 10, "quality_ratio": 0.99, "cost_ratio": 0.7,
                                   "reference_model": "beta/chat-v2"}}}
    assert savings.headline(routing, outcomes) == ("Routing kept 150% of beta/chat-v2's quality at 36% of its cost "
                                                   "on the 5 routed queries with stored outcomes.")
    text = "\n".join(savings.section(routing, outcomes))
    assert "quality target 1 × beta/chat-v2 (reached" in text and "parameter 7500" in text
    assert "quality ratio 0.990 at cost ratio 0.700" in text
    assert "predicted spend $0.0100 vs $0.0400" in text and "alpha-7b 4 (67%)" in text
    assert "| routed (chosen models) | 0.9000 | 0.0100 |" in text
    assert "| beta/chat-v2 for every query | 0.6000 | 0.0280 |" in text
    assert "price changes" not in text  # no factor other than 1
    priced = "\n".join(savings.section({**routing, "price_factors": {"beta/chat-v2": 0.5, "alpha-7b": 2.0}}, outcomes))
    assert "- price changes since training: predicted costs rescaled by alpha-7b ×2, beta/chat-v2 ×0.5" in priced
    assert "predicted 25% of beta/chat-v2's cost" in savings.headline(routing, {"queries": 0})
    zero = {**outcomes, "reference_quality": 0.0}  # the reference failed every query with an outcome: no ratio
    assert savings.headline(routing, zero) == (
        "On the 5 routed queries with stored outcomes the chosen models scored 0.9000 (mean quality) for $0.0100, "
        "beta/chat-v2 0.0000 for $0.0280.")
    assert savings.headline({**routing, "routed": 0}, None).startswith("No backlog queries")
    assert savings.headline({"model_version": None, "reason": "no champion"}, None).endswith("(no champion).")


def test_section_names_a_mixed_policy_and_a_target_reached_within_its_noise() -> None:
    routing = {"model_version": "1", "routed": 6, "reward": "linear", "reward_param": 0.04, "mix_param": 0.1,
               "mix_share": 0.25, "predicted_spend_usd": 0.01, "reference_model": "beta/chat-v2",
               "reference_spend_usd": 0.04, "model_mix": {"alpha-7b": 6},
               "policy": {"kind": "quality_target", "quality_target": 1.0, "reference_model": "beta/chat-v2",
                          "reached": True, "quality_ratio": 0.99, "quality_se": 0.012, "cost_ratio": 0.6}}
    text = "\n".join(savings.section(routing, None))
    assert f"(reached within {NOISE_Z:g} standard errors (0.012) of it on cross-fitted train predictions" in text
    assert "parameter 0.04 for 75% of prompts and 0.1 for 25% (by prompt hash)" in text
