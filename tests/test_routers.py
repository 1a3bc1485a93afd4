"""Router contract tests on small synthetic data (fast: no shipped data, no embedding model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from router.routers import ROUTERS, get_router, register
from router.routers.attention import AttentionRouter
from router.routers.base import RoutingData
from router.routers.knn import KNNRouter

#: Small-but-real settings per router so the suite stays fast; every registered name is still exercised.
FAST: dict[str, dict[str, object]] = {
    "attention": {"hidden": 32, "model_dim": 8, "attn_dim": 8, "max_epochs": 40, "n_members": 2},
}


@pytest.fixture(autouse=True)
def _few_threads(torch_threads: None) -> None:
    """One torch thread for this module's tests (restored afterwards by ``torch_threads``)."""
    torch.set_num_threads(1)


def synthetic(
    n: int = 240, d: int = 12, models: tuple[str, ...] = ("alpha", "beta", "gamma", "delta"), seed: int = 0
) -> tuple[RoutingData, np.ndarray]:
    """Dense data where model ``j`` is right when ``x[j] > 0`` (plus noise); cost ∝ prompt length × price.

    Returns the data and the true P(correct) per (prompt, model).
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    m = len(models)
    prob = 1.0 / (1.0 + np.exp(-12.0 * X[:, :m]))
    quality = (rng.random((n, m)) < prob).astype(np.float32)
    chars = rng.integers(50, 2000, size=n)
    price = np.geomspace(1e-6, 1e-4, m)
    cost = (chars[:, None] * price[None, :] * rng.uniform(0.9, 1.1, size=(n, m))).astype(np.float32)
    tasks = np.where(X[:, -1] > 0, "task_a", "task_b").astype(object)
    return RoutingData(X, quality, cost, chars, list(models), tasks), prob


def sparse(data: RoutingData, seed: int = 1) -> RoutingData:
    """Keep one observed model per prompt (as in production logs); the rest NaN."""
    rng = np.random.default_rng(seed)
    keep = rng.integers(0, len(data.models), size=data.n)
    mask = np.arange(len(data.models))[None, :] == keep[:, None]
    return RoutingData(
        data.X, np.where(mask, data.quality, np.nan).astype(np.float32),
        np.where(mask, data.cost, np.nan).astype(np.float32), data.prompt_chars, list(data.models), data.eval_names,
    )  # fmt: skip


def make(name: str) -> object:
    return get_router(name, **FAST.get(name, {}))


def test_registry_has_every_router() -> None:
    assert {"knn5", "knn10", "knn40", "mlp", "mf", "attention"} <= set(ROUTERS)
    assert get_router("knn5").k == 5 and get_router("knn40").k == 40
    assert get_router("knn5", k=3).k == 3
    with pytest.raises(KeyError, match="unknown router"):
        get_router("nope")
    with pytest.raises(ValueError, match="already registered"):
        register("knn5")(KNNRouter)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_fit_predict_contract(name: str) -> None:
    data, _ = synthetic()
    train, test = data.subset(np.arange(200)), data.subset(np.arange(200, 240))
    router = make(name).fit(train, seed=0)
    q, c = router.predict(test.X, test.prompt_chars)
    assert router.models == data.models
    assert q.shape == c.shape == (40, len(data.models))
    assert np.isfinite(q).all() and np.isfinite(c).all()
    assert (q >= 0).all() and (q <= 1).all()
    assert (c > 0).all()


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_deterministic_with_seed(name: str) -> None:
    data, _ = synthetic(n=160)
    q1, c1 = make(name).fit(data, seed=7).predict(data.X, data.prompt_chars)
    q2, c2 = make(name).fit(data, seed=7).predict(data.X, data.prompt_chars)
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(c1, c2)


@pytest.mark.parametrize("name", ["attention", "mf", "mlp", "knn40"])
def test_sparse_training_beats_constant(name: str) -> None:
    """One observed model per prompt still learns the per-prompt signal (better than per-model means).

    knn5/knn10 are left out on purpose: with one model in four observed, a model's neighbour mean rests on one or
    two 0/1 labels, which is no better than the constant; their masking is covered by the hand-computed test.
    """
    data, prob = synthetic(n=1000, d=8, seed=3)
    train_idx, test_idx = np.arange(800), np.arange(800, 1000)
    train = sparse(data.subset(train_idx))
    q, _ = make(name).fit(train, seed=0).predict(data.X[test_idx], data.prompt_chars[test_idx])
    constant = np.nanmean(train.quality, axis=0)[None, :]
    mse = np.mean((q - prob[test_idx]) ** 2)
    mse_constant = np.mean((constant - prob[test_idx]) ** 2)
    assert mse < 0.9 * mse_constant, (mse, mse_constant)


def test_arbitrary_model_pool() -> None:
    data, _ = synthetic(models=("foo-1", "bar-2", "baz-3"))
    for name in ("attention", "mf", "knn5"):
        router = make(name).fit(data)
        q, c = router.predict(data.X[:5], data.prompt_chars[:5])
        assert router.models == ["foo-1", "bar-2", "baz-3"]
        assert q.shape == c.shape == (5, 3)


def test_cost_tracks_prompt_length() -> None:
    """Routers with a cost model predict higher cost for longer prompts and the right price order."""
    data, _ = synthetic(n=300)
    for name in ("attention", "mf"):
        router = make(name).fit(data)
        x = np.repeat(data.X[:1], 2, axis=0)
        _, c = router.predict(x, np.array([100, 1900]))
        assert (c[1] > c[0]).all(), name
        assert (np.diff(c[1]) > 0).all(), name  # prices increase with the column index


def test_knn_hand_computed() -> None:
    X = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], dtype=np.float32)
    quality = np.array([[1, np.nan], [0, 1], [1, 0], [0, 0]], dtype=np.float32)
    cost = np.array([[1, np.nan], [3, 2], [5, 4], [7, 6]], dtype=np.float32)
    data = RoutingData(X, quality, cost, np.array([10, 20, 30, 40]), ["a", "b"])
    router = KNNRouter(k=2).fit(data)
    # Query (1, 0): nearest are rows 0 (sim 1) and 1 (sim 0.8). Model "a": mean(1, 0); model "b": row 0 is NaN,
    # so only row 1 counts -> 1. Costs: "a" mean(1, 3) = 2, "b" -> 2.
    # Query (0, 1): nearest rows 2 (sim 1) and 1 (sim 0.6): quality a = mean(1, 0), b = mean(0, 1).
    q, c = router.predict(np.array([[1, 0], [0, 1]], dtype=np.float32), np.array([1, 1]))
    np.testing.assert_allclose(q, [[0.5, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(c, [[2.0, 2.0], [4.0, 3.0]])
    # No neighbour saw model "b" -> its global mean over observed rows.
    data2 = RoutingData(X, np.array([[1, np.nan], [0, np.nan], [1, 1], [0, 0]], dtype=np.float32), cost,
                        np.array([10, 20, 30, 40]), ["a", "b"])  # fmt: skip
    q2, _ = KNNRouter(k=2).fit(data2).predict(np.array([[1, 0]], dtype=np.float32), np.array([1]))
    np.testing.assert_allclose(q2, [[0.5, 0.5]])


def test_attention_artifacts_round_trip() -> None:
    data, _ = synthetic(n=200)
    router = make("attention").fit(data, seed=5)
    tensors, config = router.to_artifacts()
    # Through the formats another engineer will store them in: safetensors bytes + JSON.
    restored = AttentionRouter.from_artifacts(st_load(st_save(tensors)), json.loads(json.dumps(config)))
    assert restored.models == router.models
    for a, b in zip(router.predict(data.X, data.prompt_chars), restored.predict(data.X, data.prompt_chars)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="artifact"):
        AttentionRouter.from_artifacts(tensors, {**config, "router": "knn"})


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_every_router_round_trips_through_safetensors_and_json(name: str) -> None:
    """Fit, save (safetensors bytes + JSON text, the packaged formats), load: identical predictions, on dense
    data and on few sparse rows (too few for the MLP router to fit a classifier: those models keep their mean)."""
    dense, _ = synthetic(n=160)
    for data in (dense, sparse(dense.subset(np.arange(60)))):
        router = make(name).fit(data, seed=3)
        tensors, config = router.to_artifacts()
        assert config["router"] == type(router).name and config["models"] == data.models
        restored = type(router).from_artifacts(st_load(st_save(tensors)), json.loads(json.dumps(config)))
        assert type(restored) is type(router) and restored.models == router.models
        if name == "mlp":
            assert all(router._classifiers) == (data is dense)
        queries, _ = synthetic(n=30, seed=9)
        for a, b in zip(router.predict(queries.X, queries.prompt_chars),
                        restored.predict(queries.X, queries.prompt_chars), strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="artifact"):
        type(router).from_artifacts(tensors, {**config, "router": "something-else"})
    with pytest.raises(RuntimeError, match="not fitted"):
        make(name).to_artifacts()


def test_attention_optional_task_is_inferred_from_the_prompt() -> None:
    """A missing or unknown task at prediction time gets the task classifier's guess (``infer_task``, on by
    default; here the tasks are a linear function of the embedding, so it guesses them), else an all-zero one-hot
    (``infer_task=False``, or artifacts written before the classifier existed)."""
    data, _ = synthetic(n=200)
    X, chars, truth = data.X, data.prompt_chars, np.asarray(data.eval_names).astype(str)
    router = get_router("attention", **FAST["attention"], use_task=True).fit(data)
    assert router.tasks == ["task_a", "task_b"] and router.task_classifier is not None
    guessed = np.asarray(router.tasks)[router.infer_tasks(X)]
    right = guessed == truth
    assert right.mean() >= 0.95
    q_with, _ = router.predict(X, chars, tasks=data.eval_names)
    q_inferred, c_inferred = router.predict(X, chars)
    assert np.isfinite(q_inferred).all() and (c_inferred > 0).all()
    np.testing.assert_allclose(q_inferred[right], q_with[right], rtol=1e-6)
    np.testing.assert_array_equal(router.predict(X, chars, tasks=["no such task"] * data.n)[0], q_inferred)

    tensors, config = router.to_artifacts()
    restored = AttentionRouter.from_artifacts(tensors, config)
    np.testing.assert_array_equal(restored.predict(X, chars, tasks=data.eval_names)[0], q_with)
    np.testing.assert_array_equal(restored.predict(X, chars)[0], q_inferred)

    older = AttentionRouter.from_artifacts({k: v for k, v in tensors.items() if not k.startswith("task_")}, config)
    assert older.task_classifier is None
    q_zero, _ = older.predict(X, chars)  # all-zero one-hot: the prompt alone
    assert not np.allclose(q_zero, q_with, atol=1e-4)
    router.task_classifier = None
    np.testing.assert_array_equal(router.predict(X, chars)[0], q_zero)
    off = get_router("attention", **FAST["attention"], use_task=True, infer_task=False).fit(data)
    assert off.task_classifier is None and "task_classifier.weight" not in off.to_artifacts()[0]
    np.testing.assert_array_equal(off.predict(X, chars)[0], q_zero)  # the same weights: only the classifier differs


def test_attention_weights_are_distributions() -> None:
    data, _ = synthetic(n=120)
    w = make("attention").fit(data).attention_weights(data.X, data.prompt_chars)
    assert w.shape == (120, len(data.models))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
