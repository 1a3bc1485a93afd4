"""Routing and embedding at scale: the streamed, deduplicated routing path against a per-query reference, the
prompt-hash ranges, and the Dask flows (``flows/scale.py``, a local cluster with 2 workers) giving the same
results as the single-process path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import table
from router import embeddings as emb
from router import routing
from router.rewards import get_reward

DIM = 8
MODELS = ["alpha", "beta", "gamma", "delta"]


class FakePredictor:
    """Row-wise deterministic predictions from the vector, the prompt length and the task."""

    models = MODELS

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.wq = rng.normal(size=(DIM, len(MODELS)))
        self.wc = rng.normal(size=(DIM, len(MODELS)))

    def predict(self, X, prompt_chars, tasks=None):
        X = np.asarray(X, dtype=np.float64)
        bonus = np.array([0.1 if t == "math" else 0.0 for t in tasks])[:, None] if tasks is not None else 0.0
        # einsum (no BLAS): a row's result does not depend on how many rows share the call, which a BLAS
        # matmul does not promise (its blocking changes with the shape, and so do the last bits).
        q = 1.0 / (1.0 + np.exp(-np.einsum("ij,jk->ik", X, self.wq) - bonus))
        chars = np.asarray(prompt_chars, dtype=np.float64)[:, None]
        c = np.exp(np.einsum("ij,jk->ik", X, self.wc) - 6.0) * (1.0 + chars / 100.0)
        return q, c


class FakeEncoder:
    """Deterministic unit vectors from the text's hash (no model download, no torch)."""

    def get_embedding_dimension(self) -> int:
        return DIM

    def encode(self, texts, batch_size=32, **kwargs):
        out = np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=DIM)
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _backlog(files, ingest, n: int = 120, name: str = "b.jsonl") -> None:
    # 120 queries over 40 prompts (repeats share one prediction), some with a task, one without a vector later
    records = [files.backlog_record(i, query_id=f"{name}-q{i}", prompt=f"prompt number {i % 40}" + "!" * (i % 7),
                                    task="math" if i % 3 == 0 else None) for i in range(n)]
    ingest("backlog", files.backlog(name, records=records))


def _reference(store, predictor, encoder: str, param: float, reward_name: str = "linear") -> pl.DataFrame:
    """The old algorithm: every pending query predicted and chosen on its own."""
    frame = store.sql("SELECT b.query_id, coalesce(b.task, '') AS task, p.n_chars, e.vector FROM backlog b "
                      "JOIN prompts p USING (prompt_id) JOIN embeddings e ON e.prompt_id = b.prompt_id "
                      f"AND e.encoder = '{encoder}' ORDER BY b.query_id").pl()
    q, c = predictor.predict(emb.stack(frame["vector"]), frame["n_chars"].to_numpy(), frame["task"].to_numpy())
    reward = get_reward(reward_name)
    chosen = reward.choose(q, c, param)
    rows = np.arange(len(chosen))
    return pl.DataFrame({"query_id": frame["query_id"], "chosen_model": np.asarray(MODELS)[chosen].tolist(),
                         "predicted_quality": q[rows, chosen], "predicted_cost_usd": c[rows, chosen],
                         "reward_value": reward.score(q, c, param)[rows, chosen]})


def _decisions(store, version: str) -> pl.DataFrame:
    return store.sql("SELECT query_id, chosen_model, predicted_quality, predicted_cost_usd, reward_value, "
                     f"reward_param, budget_usd FROM routing_decisions WHERE model_version = '{version}' "
                     "ORDER BY query_id").pl()


@pytest.fixture
def backlog_store(files, ingest, store, settings):
    _backlog(files, ingest)
    emb.embed_missing(store, settings, model=FakeEncoder())
    return store


def test_hash_ranges_cover_every_id_once() -> None:
    ranges = routing.hash_ranges(7)
    assert ranges[0][0] is None and ranges[-1][1] is None
    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(2000)]
    for pid in ids:
        hits = [(lo, hi) for lo, hi in ranges if (lo is None or pid >= lo) and (hi is None or pid < hi)]
        assert len(hits) == 1
    sizes = [sum((lo is None or p >= lo) and (hi is None or p < hi) for p in ids) for lo, hi in ranges]
    assert min(sizes) > 2000 / 7 * 0.7


@pytest.mark.parametrize("reward_name", ["linear", "exponential"])
def test_routing_matches_per_query_reference(backlog_store, settings, reward_name) -> None:
    predictor = FakePredictor()
    param = float(get_reward(reward_name).sweep()[len(get_reward(reward_name).sweep()) // 2])
    ref = _reference(backlog_store, predictor, settings.encoder, param, reward_name)
    done = []
    summary = routing.route_backlog(backlog_store, predictor, model_version="1", router_name="r",
                                    encoder=settings.encoder, reward_name=reward_name, reward_param=param,
                                    batch_size=7, progress=lambda d, t: done.append((d, t)))
    got = _decisions(backlog_store, "1")
    assert summary.routed == 120 == got.height and done[-1] == (120, 120)
    assert got["query_id"].to_list() == ref["query_id"].to_list()
    assert got["chosen_model"].to_list() == ref["chosen_model"].to_list()
    for col in ("predicted_quality", "predicted_cost_usd", "reward_value"):
        np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(), rtol=1e-12)
    assert summary.predicted_spend_usd == pytest.approx(ref["predicted_cost_usd"].sum())
    assert summary.predicted_quality == pytest.approx(ref["predicted_quality"].mean())
    assert summary.model_mix == dict(ref["chosen_model"].value_counts().sort("count", descending=True).iter_rows())
    again = routing.route_backlog(backlog_store, predictor, model_version="1", router_name="r",
                                  encoder=settings.encoder, reward_name=reward_name, reward_param=param)
    assert again.routed == 0 and table(backlog_store, "routing_decisions").height == 120  # the same policy


def test_excluded_models_are_never_chosen_and_the_policy_records_them(backlog_store, settings) -> None:
    """A retired model is left out without retraining: the same predictions, argmax over the other models; the
    decisions sit beside the whole pool's under their own policy key; a bad exclusion writes nothing."""
    predictor = FakePredictor()
    param = float(get_reward("linear").sweep()[-1])
    whole = routing.route_backlog(backlog_store, predictor, model_version="1", router_name="r",
                                  encoder=settings.encoder, reward_param=param)
    top = next(iter(whole.model_mix))  # the most chosen model with the whole pool
    without = routing.route_backlog(backlog_store, predictor, model_version="1", router_name="r",
                                    encoder=settings.encoder, reward_param=param, exclude=[top])
    assert without.routed == whole.routed == 120 and top not in without.model_mix
    assert without.policy == f"{whole.policy};exclude={top}"
    frame = backlog_store.sql("SELECT b.query_id, coalesce(b.task, '') AS task, p.n_chars, e.vector FROM backlog b "
                              "JOIN prompts p USING (prompt_id) JOIN embeddings e ON e.prompt_id = b.prompt_id "
                              "ORDER BY b.query_id").pl()
    q, c = predictor.predict(emb.stack(frame["vector"]), frame["n_chars"].to_numpy(), frame["task"].to_numpy())
    kept = [j for j, m in enumerate(MODELS) if m != top]
    expected = [MODELS[kept[j]] for j in get_reward("linear").choose(q[:, kept], c[:, kept], param)]
    got = backlog_store.sql(f"SELECT query_id, chosen_model FROM routing_decisions WHERE policy = '{without.policy}' "
                            "ORDER BY query_id").pl()
    assert got["query_id"].to_list() == frame["query_id"].to_list() and got["chosen_model"].to_list() == expected
    assert table(backlog_store, "routing_decisions").height == 240  # both sets kept side by side
    with pytest.raises(routing.PoolError, match=r"cannot exclude \['omega'\]: not in the champion's pool"):
        routing.route_backlog(backlog_store, predictor, model_version="2", router_name="r",
                              encoder=settings.encoder, exclude=["omega"])
    with pytest.raises(routing.PoolError, match="excluding every model .* leaves nothing to route to"):
        routing.route_backlog(backlog_store, predictor, model_version="2", router_name="r",
                              encoder=settings.encoder, exclude=MODELS)
    assert table(backlog_store, "routing_decisions").height == 240


def test_pool_exclude_setting_reads_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from router.settings import Settings

    monkeypatch.setenv("ROUTER_POOL_EXCLUDE", " gpt-4-1106-preview, claude-v2 ,")
    assert Settings().pool_exclude == ["gpt-4-1106-preview", "claude-v2"]
    monkeypatch.delenv("ROUTER_POOL_EXCLUDE")
    assert Settings().pool_exclude == [] and Settings(pool_exclude=["a"]).pool_exclude == ["a"]


def test_budget_matches_brute_force_grid(backlog_store, settings) -> None:
    predictor = FakePredictor()
    reward = get_reward("linear")
    frame = _reference(backlog_store, predictor, settings.encoder, 1.0)  # for the query count
    full = routing.route_backlog(backlog_store, predictor, model_version="max", router_name="r",
                                 encoder=settings.encoder)
    budget = full.predicted_spend_usd * 0.4
    # brute force: the old per-value loop over every query
    X = backlog_store.sql("SELECT b.query_id, coalesce(b.task,'') task, p.n_chars, e.vector FROM backlog b JOIN prompts"
                          " p USING (prompt_id) JOIN embeddings e USING (prompt_id) ORDER BY b.query_id").pl()
    q, c = predictor.predict(emb.stack(X["vector"]), X["n_chars"].to_numpy(), X["task"].to_numpy())
    grid = routing.budget_grid(reward)
    rows = np.arange(q.shape[0])
    spend = np.array([c[rows, reward.choose(q, c, float(p))].sum() for p in grid])
    quality = np.array([q[rows, reward.choose(q, c, float(p))].sum() for p in grid])
    fits = spend <= budget
    best = grid[int(np.flatnonzero(fits)[np.argmax(quality[fits])])]
    summary = routing.route_backlog(backlog_store, predictor, model_version="b", router_name="r",
                                    encoder=settings.encoder, budget=budget, batch_size=11)
    assert summary.reward_param == pytest.approx(best, rel=1e-12)
    assert summary.predicted_spend_usd <= budget + 1e-12 and summary.routed == frame.height
    got = _decisions(backlog_store, "b")
    assert set(got["budget_usd"]) == {budget}
    with pytest.raises(routing.BudgetError, match=r"budget \$0\.0000 is below the cheapest predicted routing"):
        routing.route_backlog(backlog_store, predictor, model_version="c", router_name="r",
                              encoder=settings.encoder, budget=1e-12)


def test_unembedded_queries_wait(files, ingest, backlog_store, settings) -> None:
    ingest("backlog", files.backlog("late.jsonl", records=[files.backlog_record(0, query_id="late",
                                                                                prompt="never embedded")]))
    summary = routing.route_backlog(backlog_store, FakePredictor(), model_version="1", router_name="r",
                                    encoder=settings.encoder)
    assert summary.routed == 120 and summary.skipped_unembedded == 1


def test_dask_flows_match_single_process(files, ingest, store, settings, tmp_path, prefect_ephemeral) -> None:
    """Embed and route on a local Dask cluster (2 workers, threads) by hash range: same vectors, same decisions."""
    _backlog(files, ingest)
    encoder = FakeEncoder()
    # single-process reference in a copy of the store
    ref_settings = settings.model_copy(update={"db_path": tmp_path / "ref.duckdb"})
    from router.storage import connect

    ref = connect(ref_settings)
    for name in ("prompts", "backlog"):
        ref.register("src_frame", table(store, name))
        ref.execute(f"INSERT INTO {name} SELECT * FROM src_frame")
        ref.unregister("src_frame")
    emb.embed_missing(ref, ref_settings, model=encoder)
    predictor = FakePredictor()
    single = routing.route_backlog(ref, predictor, model_version="1", router_name=settings.registered_model,
                                   encoder=settings.encoder, reward_param=1.0)
    ref_vectors = dict(zip(table(ref, "embeddings")["prompt_id"], emb.stack(table(ref, "embeddings")["vector"]),
                           strict=True))
    ref_decisions = _decisions(ref, "1")
    ref.close()
    store.close()

    from flows import scale

    out = scale.run_embed(chunks=5, n_workers=2, model=encoder)
    assert out["embedded"] == len(ref_vectors)
    routed = scale.run_route(chunks=5, n_workers=2, predictor=predictor, model_version="1", reward_param=1.0)
    assert routed["routed"] == single.routed == 120 and routed["policy"] == {"kind": "lambda"}
    assert routed["model_mix"] == single.model_mix
    con = connect(settings)
    try:
        got = table(con, "embeddings")
        vectors = dict(zip(got["prompt_id"], emb.stack(got["vector"]), strict=True))
        assert vectors.keys() == ref_vectors.keys()
        for pid, vec in vectors.items():
            np.testing.assert_array_equal(vec, ref_vectors[pid])
        decisions = _decisions(con, "1")
    finally:
        con.close()
    assert decisions.drop("budget_usd").equals(ref_decisions.drop("budget_usd"))


def test_policies_side_by_side_and_the_docs_comparison(backlog_store, settings) -> None:
    """Decisions are keyed by (query, version, policy): a second policy keeps the first's decisions, the first
    routed again after it decides the backlog again in place (its rows replaced, none added), a re-run of the
    newest adds nothing, latest_decisions shows the newest run, and docs/analysts.md's comparison runs."""
    import re

    predictor = FakePredictor()
    kwargs = {"model_version": "1", "router_name": "r", "encoder": settings.encoder}
    first = routing.route_backlog(backlog_store, predictor, reward_param=1e9, quality_target=1.0, **kwargs)
    second = routing.route_backlog(backlog_store, predictor, reward_param=1e-3, quality_target=0.95, **kwargs)
    assert (first.policy, second.policy) == ("quality_target=1", "quality_target=0.95")
    latest = "SELECT DISTINCT reward_param FROM latest_decisions"
    assert first.routed == second.routed == 120 and backlog_store.sql(latest).fetchall() == [(1e-3,)]
    again = routing.route_backlog(backlog_store, predictor, reward_param=1e9, quality_target=1.0, **kwargs)
    once_more = routing.route_backlog(backlog_store, predictor, reward_param=1e9, quality_target=1.0, **kwargs)
    assert again.routed == 120 and once_more.routed == 0
    rows = backlog_store.sql("SELECT policy, count(*) FROM routing_decisions GROUP BY ALL ORDER BY 1").fetchall()
    assert rows == [("quality_target=0.95", 120), ("quality_target=1", 120)]
    assert backlog_store.sql(latest).fetchall() == [(1e9,)]

    docs = (Path(__file__).resolve().parents[1] / "docs" / "analysts.md").read_text()
    block = next(b for b in re.findall(r"```sql\n(.*?)```", docs, flags=re.S) if "both_runs" in b)
    got = {r[1]: r for r in backlog_store.sql(block).fetchall()}
    ref = {p: backlog_store.sql(f"SELECT count(*), sum(predicted_cost_usd) FROM routing_decisions "
                                f"WHERE policy = '{p}'").fetchall()[0] for p in got}
    assert set(got) == {"quality_target=1", "quality_target=0.95"}
    differ = backlog_store.sql("SELECT count(*) FROM routing_decisions a JOIN routing_decisions b USING (query_id) "
                               "WHERE a.policy = 'quality_target=1' AND b.policy = 'quality_target=0.95' "
                               "AND a.chosen_model <> b.chosen_model").fetchall()[0][0]
    assert differ > 0
    for policy, (version, _, queries, spend, _, routed_differently) in got.items():
        assert version == "1" and queries == ref[policy][0] == 120
        assert spend == pytest.approx(ref[policy][1], abs=1e-4) and routed_differently == differ
    # A policy under a new version: the two newest runs are (2, 0.95) and (1, 1), one row each.
    routing.route_backlog(backlog_store, predictor, reward_param=1e-3, quality_target=0.95,
                          **{**kwargs, "model_version": "2"})
    rows = {(r[0], r[1]): r for r in backlog_store.sql(block).fetchall()}
    assert set(rows) == {("2", "quality_target=0.95"), ("1", "quality_target=1")}
    assert {r[2] for r in rows.values()} == {120} and {r[5] for r in rows.values()} == {differ}
    # version 2 chose as version 1's 0.95 run (same λ), version 1's run of the target 1 as before
    assert rows["2", "quality_target=0.95"][3] == pytest.approx(ref["quality_target=0.95"][1], abs=1e-4)
    assert rows["1", "quality_target=1"][3] == pytest.approx(ref["quality_target=1"][1], abs=1e-4)


def test_distributed_route_reads_the_champion_once_it_holds_the_lock(files, ingest, backlog_store, settings,
                                                                    monkeypatch, prefect_ephemeral) -> None:
    """A route flow that waits for the workspace lock (``ROUTER_STORE_WAIT_SECONDS``) while a nightly promotes a new
    champion routes with the new one, as ``routerctl route`` does: the champion is read under the lock, not before."""
    import threading

    from flows import scale
    from router import champion, locking
    from router.storage import connect

    backlog_store.close()
    current = {"version": "1"}

    class Plan(champion.RoutePlan):
        def price_factors(self, con, day=None):  # noqa: ANN001, ANN201 - no price table in this store
            return None

    def plan(settings, **kwargs):  # noqa: ANN001, ANN003, ANN202
        from types import SimpleNamespace

        return Plan(current["version"], SimpleNamespace(router=FakePredictor(), policy={}), "linear", 1.0, None,
                    {"kind": "lambda"})

    monkeypatch.setattr(champion, "plan", plan)
    monkeypatch.setenv("ROUTER_STORE_WAIT_SECONDS", "120")
    waiting = threading.Event()
    take = locking.workspace_lock

    def watched(workspace, name="pipeline", wait_seconds=0.0):  # noqa: ANN001, ANN202
        waiting.set()
        return take(workspace, name, wait_seconds)

    monkeypatch.setattr(locking, "workspace_lock", watched)
    held = take(settings.workspace)
    held.__enter__()

    def nightly_promotes() -> None:
        waiting.wait(120)
        current["version"] = "2"  # the night promoted v2 while the flow waited
        held.__exit__(None, None, None)

    night = threading.Thread(target=nightly_promotes)
    night.start()
    try:
        out = scale.run_route(chunks=3, n_workers=2)
    finally:
        night.join()
    assert out["model_version"] == "2" and out["routed"] == 120
    con = connect(settings)
    try:
        assert con.sql("SELECT DISTINCT model_version FROM routing_decisions").fetchall() == [("2",)]
    finally:
        con.close()


@pytest.mark.parametrize("argv", [["route", "--lambda", "5", "--quality-target", "0.9"],
                                  ["route", "--budget", "1", "--lambda", "5"],
                                  ["route", "--lambda", "-1"], ["route", "--budget", "0"],
                                  ["route", "--quality-target", "nan"], ["embed", "--chunks", "0"],
                                  ["route", "--reward", "quadratic"]])
def test_the_scale_command_refuses_what_routerctl_route_refuses(argv, settings, monkeypatch, capsys) -> None:
    """One of --lambda, --budget, --quality-target, each positive and finite, and at least one chunk: given two,
    the flow used to route under one of them and drop the other (stored under that policy's key)."""
    from flows import scale

    started = []
    monkeypatch.setattr(scale, "run_route", lambda *a, **k: started.append(k))
    monkeypatch.setattr(scale, "run_embed", lambda *a, **k: started.append(k))
    with pytest.raises(SystemExit) as info:
        scale.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and not started and any(
        m in err for m in ("not allowed with argument", "must be", "invalid choice")), err


def test_the_scale_command_exits_2_when_there_is_no_champion(monkeypatch, capsys) -> None:
    """Nothing routed for want of a champion is an error, as for `routerctl route` (it exited 0)."""
    from flows import scale

    monkeypatch.setattr(scale, "run_route", lambda *a, **k: {"routed": 0, "model_version": None,
                                                              "reason": "no champion"})
    with pytest.raises(SystemExit) as info:
        scale.main(["route", "--chunks", "2"])
    assert info.value.code == 2 and "no champion registered" in capsys.readouterr().err
