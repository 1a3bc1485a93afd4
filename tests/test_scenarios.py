"""What-if routing scenarios (router.scenarios): sweep totals by hand, stored rows, view, no decisions written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import TwoModelRouter, embed_backlog
from router.rewards import get_reward
from router.scenarios import run_scenarios, scenario_points

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_scenario_points_by_hand() -> None:
    # Two units (weights 2 and 1), models cheap (q .5, c 1) and rich (q .9, c 3) on both.
    # cheap → rich when λ·.4 > 2, i.e. λ > 5: λ = 1 all cheap (spend 3, quality .5); λ = 10 all rich (9, .9).
    q = np.array([[0.5, 0.9], [0.5, 0.9]])
    c = np.array([[1.0, 3.0], [1.0, 3.0]])
    spend, quality, counts = scenario_points(get_reward("linear"), np.array([1.0, 10.0]), q, c, np.array([2.0, 1.0]))
    np.testing.assert_allclose(spend, [3.0, 9.0])
    np.testing.assert_allclose(quality, [0.5, 0.9])
    np.testing.assert_allclose(counts, [[3, 0], [0, 3]])


def test_run_scenarios_stores_points_and_mix_and_writes_no_decision(store, ingest, files, tmp_path: Path,
                                                                    caplog) -> None:
    records = [files.backlog_record(0), files.backlog_record(1), files.backlog_record(2, prompt="Backlog prompt 1")]
    ingest("backlog", files.backlog(records=records))  # q-1 and q-2 share a prompt: one unit of weight 2
    embed_backlog(store, hard=["q-0"])
    caplog.set_level("INFO", logger="router.scenarios")
    run = run_scenarios(store, TwoModelRouter(easy=0.89), model_version="1", encoder="enc", reward_name="linear", policy_param=50.0,
                        reference_model="rich", out_dir=tmp_path / "out")
    assert (run.backlog, run.queries) == ("pending", 3)
    assert f"scenario run {run.run_id}: 34 points for 3 pending backlog queries" in caplog.text
    assert run.plot is not None and run.plot.read_bytes().startswith(PNG_SIGNATURE)
    assert store.execute("SELECT count(*) FROM routing_decisions").fetchone()[0] == 0

    rows = store.execute("SELECT point, reward_param, predicted_spend_usd, predicted_quality, model_shares "
                         "FROM latest_scenarios ORDER BY point, reward_param").fetchall()
    assert [r[0] for r in rows].count("sweep") == 32 and len(rows) == 34
    by_point = {(r[0], r[1]): r for r in rows}
    # q-0 (hard): rich when λ·.8 > .009 (λ > .01125); q-1/q-2 (easy): rich when λ·.01 > .009 (λ > .9).
    cheap_end = by_point[("sweep", 1e-10)]
    assert cheap_end[2] == pytest.approx(0.003) and cheap_end[3] == pytest.approx(0.89 * 2 / 3 + 0.1 / 3)
    assert json.loads(cheap_end[4]) == {"cheap": 1.0}
    middle = by_point[("sweep", 0.5)]  # q-0 rich, the easy pair cheap
    assert middle[2] == pytest.approx(0.012) and json.loads(middle[4]) == pytest.approx({"cheap": 2 / 3,
                                                                                        "rich": 1 / 3})
    policy, reference = by_point[("policy", 50.0)], by_point[("reference", 0.0)]
    assert policy[2] == pytest.approx(0.03) and reference[2] == pytest.approx(0.03)
    assert reference[3] == pytest.approx(0.9) and json.loads(reference[4]) == {"rich": 1.0}

    # Once the backlog is decided, a scenario run covers every query ("all") and becomes the latest.
    store.execute("INSERT INTO routing_decisions SELECT query_id, '1', 'r', 'cheap', 0.5, 0.001, 'linear', 1.0, "
                  "0.0, NULL, NULL, now()::TIMESTAMP, 'lambda=1' FROM backlog")
    with caplog.at_level("INFO", logger="router.scenarios"):
        again = run_scenarios(store, TwoModelRouter(easy=0.89), model_version="1", encoder="enc",
                              reward_name="linear", policy_param=None, reference_model=None)
    assert (again.backlog, again.queries) == ("all", 3)
    assert f"scenario run {again.run_id}: 32 points for all 3 backlog queries" in caplog.text
    latest = store.execute("SELECT DISTINCT scenario_run_id, backlog FROM latest_scenarios").fetchall()
    assert latest == [(again.run_id, "all")]


def test_scenarios_leave_out_the_excluded_models_as_routing_does(store, ingest, files) -> None:
    """With ``rich`` left out of the pool no point of the sweep or the policy chooses it (routing never would);
    the reference point is still every query to the best single model, and the run records the exclusion."""
    from router.routing import PoolError

    ingest("backlog", files.backlog(records=[files.backlog_record(i) for i in range(3)]))
    embed_backlog(store, hard=["q-0", "q-1", "q-2"])  # every prompt hard for cheap
    kwargs = {"model_version": "1", "encoder": "enc", "reward_name": "linear", "policy_param": 50.0,
              "reference_model": "rich"}
    whole = run_scenarios(store, TwoModelRouter(easy=0.89), **kwargs)
    left_out = run_scenarios(store, TwoModelRouter(easy=0.89), **kwargs, exclude=["rich"])
    assert (whole.excluded, left_out.excluded) == ("", "rich")
    chosen = {run.run_id: set(run.mix.filter(pl.col("point") != "reference")["model"]) for run in (whole, left_out)}
    assert chosen == {whole.run_id: {"cheap", "rich"}, left_out.run_id: {"cheap"}}
    policy = {run.run_id: run.points.filter(pl.col("point") == "policy")["predicted_spend_usd"][0]
              for run in (whole, left_out)}
    assert policy == {whole.run_id: pytest.approx(0.03), left_out.run_id: pytest.approx(0.003)}
    reference = left_out.mix.filter(pl.col("point") == "reference")
    assert reference["model"].to_list() == ["rich"] and reference["queries"].to_list() == [3]
    stored = store.execute("SELECT DISTINCT excluded FROM latest_scenarios").fetchall()
    assert stored == [("rich",)]
    with pytest.raises(PoolError, match="not in the champion's pool"):
        run_scenarios(store, TwoModelRouter(easy=0.89), **kwargs, exclude=["nobody"])
