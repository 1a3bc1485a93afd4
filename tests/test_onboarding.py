"""Onboarding a new model into a fitted attention router (``router.onboarding``): what the new row learns, what
stays frozen, and when onboarding refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from router.onboarding import NotEnoughOutcomes, Outcomes, held_out_check, holdout_split, onboard
from router.routers.attention import AttentionRouter
from router.routers.base import RoutingData

CONFIG = {"hidden": 32, "model_dim": 8, "attn_dim": 8, "max_epochs": 30, "n_members": 2, "batch_size": 32,
          "dropout": 0.0}
D = 12


def _world(seed: int = 0):
    """Prompts whose outcomes follow two latent directions: four known models, and a new one that answers
    well exactly where the first direction is positive and the second negative (a pattern no known model
    has)."""
    rng = np.random.default_rng(seed)
    w1, w2 = rng.normal(size=D), rng.normal(size=D)

    def prompts(n: int):
        X = rng.normal(size=(n, D)).astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        return X, 3 * X @ w1, 3 * X @ w2

    def draw(logit: np.ndarray) -> np.ndarray:
        return (rng.random(logit.shape) < 1 / (1 + np.exp(-logit))).astype(np.float32)

    X, a, b = prompts(600)
    logits = np.stack([a, -a, b, -b], axis=1)
    quality = draw(logits)
    cost = np.tile(np.array([1e-4, 1e-3, 1e-2, 1e-5], dtype=np.float32), (600, 1))
    known = RoutingData(X, quality, cost, rng.integers(50, 500, size=600), ["a", "b", "c", "d"])

    def new_model(n: int) -> Outcomes:
        Xn, an, bn = prompts(n)
        return Outcomes(Xn, rng.integers(50, 500, size=n), draw(an - bn), np.full(n, 3e-3))

    return known, new_model


@pytest.fixture(scope="module")
def fitted():
    known, new_model = _world()
    router = AttentionRouter(**CONFIG).fit(known, seed=3)
    return router, new_model


def _corr(router: AttentionRouter, outcomes: Outcomes) -> float:
    q, _ = router.predict(outcomes.X, outcomes.prompt_chars)
    return float(np.corrcoef(q[:, router.models.index("new")], outcomes.quality)[0, 1])


def test_onboarding_learns_the_new_models_outcomes(fitted) -> None:
    router, new_model = fitted
    train, held = new_model(400), new_model(400)
    done = onboard(router, "new", train)
    assert done.router.models == ["a", "b", "c", "d", "new"]
    assert done.n_fit == 400 and done.loss_after < done.loss_before
    # An untrained row: the mean of the known rows, appended to each member as onboarding would.
    untrained = onboard(router, "new", train, steps=0)
    for net, base in zip(untrained.router.members, router.members, strict=True):
        net.model_emb.data[-1] = base.model_emb.detach().mean(0)
    learned, blank = _corr(done.router, held), _corr(untrained.router, held)
    assert learned > 0.3 and learned > blank + 0.2, (learned, blank)
    # The gate's check on held-out outcomes: the learned row beats the base rate, the untrained one does not.
    check = held_out_check(done.router, "new", held, train)
    assert check.n == 400 and check.passed and check.brier < check.constant_brier - 0.01
    assert held_out_check(untrained.router, "new", held, train).brier > check.brier
    # Its cost path: the new model's predicted cost moves to its own (constant) cost.
    _, cost = done.router.predict(held.X, held.prompt_chars)
    assert np.median(np.abs(np.log(cost[:, -1] / 3e-3))) < 0.5
    # The known models' predictions barely move although the new row enters the attention.
    q_before, _ = router.predict(held.X, held.prompt_chars)
    q_after, _ = done.router.predict(held.X, held.prompt_chars)
    assert np.abs(q_after[:, :4] - q_before).max() < 0.1


def test_everything_but_the_new_row_is_frozen_bitwise(fitted) -> None:
    router, new_model = fitted
    before = [{k: v.clone() for k, v in net.state_dict().items()} for net in router.members]
    done = onboard(router, "new", new_model(200))
    for old, net, original in zip(before, done.router.members, router.members, strict=True):
        state = net.state_dict()
        assert set(state) == set(old)
        for name, value in old.items():
            if name == "model_emb":
                assert torch.equal(state[name][:-1], value) and state[name].shape[0] == value.shape[0] + 1
                assert not torch.equal(state[name][-1], value.mean(0))
            else:
                assert torch.equal(state[name], value), name
        for name, value in original.state_dict().items():  # the original router is untouched
            assert torch.equal(value, old[name])
    assert router.models == ["a", "b", "c", "d"]


def test_the_extended_router_survives_its_artifacts(fitted) -> None:
    router, new_model = fitted
    done = onboard(router, "new", new_model(100)).router
    tensors, config = done.to_artifacts()
    again = AttentionRouter.from_artifacts(tensors, config)
    probe = new_model(50)
    assert config["models"] == ["a", "b", "c", "d", "new"]
    np.testing.assert_array_equal(again.predict(probe.X, probe.prompt_chars)[0],
                                  done.predict(probe.X, probe.prompt_chars)[0])


def test_too_few_outcomes_or_a_known_model_is_refused(fitted) -> None:
    router, new_model = fitted
    few = new_model(30)
    with pytest.raises(NotEnoughOutcomes, match=r"'new' has 30 scored outcomes; onboarding needs at least 200"):
        onboard(router, "new", few, min_outcomes=200)
    unscored = Outcomes(few.X, few.prompt_chars, np.where(np.arange(30) < 25, np.nan, few.quality), few.cost)
    with pytest.raises(NotEnoughOutcomes, match="has 5 scored outcomes"):
        onboard(router, "new", unscored, min_outcomes=10)
    with pytest.raises(Exception, match="already in the router's pool"):
        onboard(router, "c", few)


def test_holdout_split_is_seeded_and_disjoint() -> None:
    fit, held = holdout_split(100, 0.2, seed=1)
    assert len(held) == 20 and len(fit) == 80 and not set(fit) & set(held)
    assert sorted([*fit, *held]) == list(range(100))
    again = holdout_split(100, 0.2, seed=1)
    assert np.array_equal(again[1], held) and not np.array_equal(holdout_split(100, 0.2, seed=2)[1], held)
    assert len(holdout_split(3, 0.01, seed=0)[1]) == 1 and len(holdout_split(5, 0.0, seed=0)[1]) == 0
    assert [len(part) for part in holdout_split(3, 0.9, seed=0)] == [1, 2]  # one outcome is always fitted on
    assert [part.tolist() for part in holdout_split(1, 0.7, seed=0)] == [[0], []]
    assert [len(part) for part in holdout_split(0, 0.5, seed=0)] == [0, 0]


def _champion_without_newcomer(settings, files, newcomer: str = "newcomer") -> tuple[int, str]:
    """A store with RouterBench rows and 60 scored log outcomes of ``newcomer``, and a promoted champion fitted
    without it: (its version, its MLflow run id)."""
    from test_scale import FakeEncoder

    from conftest import MODELS
    from router import embeddings as emb
    from router.dataset import load_routing_data
    from router.evaluation import evaluate
    from router.ingest import ingest_file
    from router.registry import promotion, tracking
    from router.storage import connect

    con = connect(settings)
    try:
        ingest_file(con, "routerbench", files.routerbench("bench_train.csv", n=80), settings)
        ingest_file(con, "routerbench", files.routerbench("bench_test.csv", n=30, start=100), settings)
        logs = [files.log_record(i, model=newcomer, quality=float(i % 3 == 0), cost_usd=0.002) for i in range(60)]
        ingest_file(con, "logs", files.logs(records=logs), settings)
        emb.embed_missing(con, settings, model=FakeEncoder())
        train = load_routing_data(con, settings.encoder, "train", sources=["routerbench"], models=list(MODELS))
        test = load_routing_data(con, settings.encoder, "test", models=list(MODELS))
    finally:
        con.close()
    champion = AttentionRouter(**{**CONFIG, "max_epochs": 5}).fit(train, seed=1)
    q, c = champion.predict(test.X, test.prompt_chars)
    result = evaluate({"attention": (q, c, "linear")}, test.quality, test.cost, test.eval_names, test.models)
    run = tracking.log_training_run(settings, champion, result, None, {"rows": train.n}, train_data=train)
    first = promotion.register_challenger(settings, run)
    assert promotion.gate(settings, first, test).promoted
    return first, run


@pytest.mark.slow
def test_routerctl_models_onboard(settings, files, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A champion trained without ``newcomer``; logs name it: too few outcomes or an unknown name exit 2, enough
    outcomes register and gate a challenger whose pool ends with it. The champion routes to it only if the gate
    promotes that challenger."""
    from conftest import MODELS
    from router import nightly
    from router.registry import promotion

    first, run = _champion_without_newcomer(settings, files)

    tonight = nightly.onboard_new_models(settings)  # no training run has these inputs: the retrain fits it
    assert tonight["onboarded"] == [] and "newcomer: not onboarded, tonight's full retrain" in tonight["notes"][0]

    unknown = cli("models", "onboard", "nobody")
    assert unknown.exit_code == 2 and "no stored outcome names model 'nobody'" in unknown.output
    monkeypatch.setenv("ROUTER_ONBOARD_MIN_OUTCOMES", "61")
    few = cli("models", "onboard", "newcomer")
    assert few.exit_code == 2 and "'newcomer' has 60 scored outcomes" in few.output, few.output
    assert promotion.load_version(settings, promotion.champion_version(settings)).pool.models == list(MODELS)

    monkeypatch.setenv("ROUTER_ONBOARD_MIN_OUTCOMES", "50")
    done = cli("models", "onboard", "newcomer")
    assert done.exit_code == 0, done.output
    versions = {v.version: v for v in promotion.list_versions(settings)}
    assert set(versions) == {first, first + 1}
    challenger = promotion.load_version(settings, first + 1)
    assert challenger.pool.models == [*MODELS, "newcomer"]
    assert versions[first + 1].gate in ("promoted", "rejected") and "onboarded newcomer" in done.output
    reason = json.loads(versions[first + 1].tags[f"gate.v{first + 1}"])["reason"]
    assert "onboarded newcomer" in reason and "12 outcomes" in reason  # 20 % of 60 held out for the gate
    expected = first + 1 if versions[first + 1].gate == "promoted" else first
    assert promotion.champion_version(settings) == expected

    # With the inputs unchanged since a training run, the nightly onboards, but not twice into one champion.
    from datetime import datetime

    from router.dataset import snapshot
    from router.storage import connect, execute

    with connect(settings) as con:
        execute(con, "nightly/insert_training_run", {
            "run_id": "r1", "data_key": nightly.data_key(settings, snapshot(con).ingest_runs), "mlflow_run_id": run,
            "model_version": str(first), "attention_aiq": 0.5, "best_baseline": "knn5", "baseline_aiq": 0.4,
            "report_dir": "", "flow_run_id": None, "now": datetime(2026, 1, 1)})
    again = nightly.onboard_new_models(settings)
    assert again["onboarded"] == []
    if expected == first:
        assert again["notes"] == [f"newcomer: already onboarded into v{first} and gated"]
    else:
        assert again["notes"] == []  # the champion routes to it now
    assert len(promotion.list_versions(settings)) == 2


@pytest.mark.parametrize(("point", "newcomer"), [("onboard.logged", "newcomer"), ("onboard.gated", "o'brien-7b")])
def test_onboarding_that_dies_after_logging_or_gating_is_resumed_once(settings, files, monkeypatch, point,
                                                                      newcomer) -> None:
    """Onboarding dies after its MLflow run is logged (nothing registered) or after the gate (nothing recorded in
    the store): the nightly does not take the model as onboarded, and the next attempt resumes it: one onboarding
    run, one challenger version, one gate decision, one ``promotions`` row. Asked again, nothing new is made. A
    model whose name has a quote (never put into an MLflow filter string) is found again all the same."""
    from router import nightly
    from router.registry import promotion, tracking
    from router.storage import connect

    first, _ = _champion_without_newcomer(settings, files, newcomer)
    settings = settings.model_copy(update={"onboard_min_outcomes": 50})

    def onboarding_runs() -> list:
        with tracking.connect(settings) as client:
            experiment = client.get_experiment_by_name(settings.mlflow_experiment)
            runs = client.search_runs([experiment.experiment_id], f"params.onboarded_into = '{first}'")
            return [r for r in runs if r.data.params["onboarded_model"] == newcomer]

    def promotion_rows() -> list:
        with connect(settings) as con:
            return con.sql("SELECT challenger, promoted, reason FROM promotions ORDER BY decided_at").fetchall()

    monkeypatch.setenv("ROUTER_FAULT_POINT", point)
    monkeypatch.setenv("ROUTER_FAULT_ACTION", "enospc")
    with pytest.raises(OSError, match=f"injected at {point}"):
        nightly.onboard_model(settings, newcomer)
    monkeypatch.delenv("ROUTER_FAULT_POINT")
    [run] = onboarding_runs()
    versions = {v.version: v for v in promotion.list_versions(settings)}
    assert set(versions) == ({first} if point == "onboard.logged" else {first, first + 1})
    assert promotion_rows() == []  # (the champion's gate was not recorded in the store by this test's setup)
    gate_tags = dict(versions[first + 1].tags) if point == "onboard.gated" else None
    assert not nightly._onboarded_before(settings, newcomer, first)

    step = nightly.onboard_model(settings, newcomer)
    assert [r.info.run_id for r in onboarding_runs()] == [run.info.run_id] and step.mlflow_run_id == run.info.run_id
    versions = {v.version: v for v in promotion.list_versions(settings)}
    assert set(versions) == {first, first + 1} and step.version == first + 1
    assert versions[first + 1].gate == step.decision["decision"]
    if gate_tags is not None:  # gated before dying: that decision stands, the version was not gated again
        assert {k: v for k, v in versions[first + 1].tags.items() if k.startswith("gate.")} == {
            k: v for k, v in gate_tags.items() if k.startswith("gate.")}
    # The newcomer's outcomes (every third prompt scored 1) are noise to the router: its held-out check rejects it.
    assert step.decision["decision"] == "rejected" and "held-out Brier" in step.decision["reason"]
    assert promotion_rows() == [(str(first + 1), False, step.decision["reason"])]
    assert promotion.champion_version(settings) == first

    # Asked again (the nightly skips it; `routerctl models onboard` asks): the recorded decision, nothing new.
    assert nightly._onboarded_before(settings, newcomer, first)
    again = nightly.onboard_model(settings, newcomer)
    assert (again.version, again.decision) == (first + 1, step.decision)
    assert len(onboarding_runs()) == 1 and len(promotion_rows()) == 1 and len(promotion.list_versions(settings)) == 2


def test_models_awaiting_outcomes_are_neither_trained_nor_routed_to(settings, files, ingest, store) -> None:
    """A model named only by logs joins the training pool once it has ROUTER_ONBOARD_MIN_OUTCOMES scored outcomes;
    benchmark models count at once, however few their rows. Routing chooses only the champion's models."""
    from test_scale import FakeEncoder, FakePredictor, _backlog

    from conftest import MODELS
    from router import embeddings as emb
    from router import routing
    from router.dataset import model_pool, routable_pool

    ingest("routerbench", files.routerbench("bench_train.csv", n=4))
    logs = [files.log_record(i, model="thin", quality=1.0, cost_usd=1e-9) for i in range(5)]
    logs += [files.log_record(10 + i, model="thick", quality=1.0) for i in range(8)]
    logs += [files.log_record(30 + i, model="unscored", quality=None) for i in range(9)]
    ingest("logs", files.logs(records=logs))
    assert set(model_pool(store)) == {*MODELS, "thin", "thick", "unscored"}
    assert routable_pool(store, 8) == sorted([*MODELS, "thick"])
    assert routable_pool(store, 9) == sorted(MODELS)
    assert routable_pool(store, 1) == sorted([*MODELS, "thick", "thin"])

    _backlog(files, ingest)
    emb.embed_missing(store, settings, model=FakeEncoder())
    predictor = FakePredictor()  # a champion whose pool lacks the logged models
    summary = routing.route_backlog(store, predictor, model_version="1", router_name="r", encoder=settings.encoder)
    chosen = {row[0] for row in store.sql("SELECT DISTINCT chosen_model FROM routing_decisions").fetchall()}
    assert summary.routed > 0 and chosen and chosen <= set(predictor.models)


def test_the_onboarding_bench_prints_a_row_per_router_and_size() -> None:
    """``python -m bench.onboarding``'s table on a small world: per held-out model, the router without it, one
    onboarded router per size, and the full retrain (ratio 1 to itself); the figures are AIQs."""
    from bench.onboarding import run

    known, _ = _world(seed=5)
    train, test = known.subset(np.arange(400)), known.subset(np.arange(400, 600))
    lines = run(train, test, {"cheap": "d", "strong": "a"}, (30, 60), seed=1)
    rows = [line.strip("|").split("|") for line in lines[2:]]
    assert [(r[0].strip(), r[1].strip(), r[2].strip()) for r in rows] == [
        (f"{m} ({role})", router, n) for role, m in (("cheap", "d"), ("strong", "a"))
        for router, n in (("without it", "0"), ("onboarded", "30"), ("onboarded", "60"), ("full retrain", "400"))]
    aiqs = [float(r[3]) for r in rows]
    assert all(0.0 < a <= 1.0 for a in aiqs) and aiqs[3] == aiqs[7]  # one full retrain for both
    assert [float(r[4]) for r in rows if r[1].strip() == "full retrain"] == [1.0, 1.0]
    for r in rows:
        assert abs(float(r[4]) - float(r[3]) / aiqs[3]) < 1e-3


def test_the_night_report_says_what_onboarding_did(store, tmp_path) -> None:
    from datetime import UTC, datetime

    from router.night_report import onboard_lines, write_night_report

    tonight = {"champion": 3, "onboarded": [{"model": "newcomer", "skipped": False, "version": 4, "mlflow_run_id": "r",
                                             "decision": {"decision": "rejected", "reason": "held-out Brier 0.31"}}],
               "notes": ["slowpoke has 12 scored outcomes with an embedded prompt"]}
    lines = onboard_lines(tonight)
    assert lines == ["- newcomer: onboarded as challenger v4, **rejected** — held-out Brier 0.31",
                     "- slowpoke has 12 scored outcomes with an embedded prompt"]
    assert onboard_lines({"champion": 3, "onboarded": [], "notes": []}) == [
        "Every model named by the stored outcomes is in the champion's pool."]
    assert onboard_lines(None) == ["Onboarding did not run."]
    now = datetime.now(UTC).replace(tzinfo=None)
    out = write_night_report(store, tmp_path / "reports", flow_run_id="night-1", started=now, night=now.date(),
                             ingest={}, validation={}, embed={}, train={"skipped": True}, promotion={"skipped": True},
                             routing={"model_version": None}, onboard=tonight)
    text = (out / "report.md").read_text()
    assert "## Onboarding\n\n" + "\n".join(lines) + "\n\n## Training" in text
