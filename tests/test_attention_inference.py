"""The attention router's fast prediction path equals the members' own ``forward`` (fast: tiny networks)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from router.routers.attention import AttentionRouter
from router.routers.attention_inference import EnsembleInference, on_cores
from router.routers.base import RoutingData

MODELS = ("alpha", "beta", "gamma", "delta", "epsilon")
TASKS = ("task_a", "task_b", "task_c")
#: Deliberately unequal widths, so that a transposed or mixed-up weight cannot go unnoticed.
SMALL = {"hidden": 24, "model_dim": 6, "attn_dim": 10, "max_epochs": 2, "n_members": 2, "batch_size": 32}


def _data(n: int, d: int = 16, seed: int = 0) -> RoutingData:
    """Random unit vectors, 0/1 quality and log-uniform costs, with about a fifth of the pairs unobserved."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    m = len(MODELS)
    quality = (rng.random((n, m)) < 0.6).astype(np.float32)
    cost = np.exp(rng.uniform(np.log(1e-5), np.log(1e-2), size=(n, m))).astype(np.float32)
    quality[rng.random((n, m)) < 0.2] = np.nan
    cost[rng.random((n, m)) < 0.2] = np.nan
    chars = rng.integers(10, 5000, size=n)
    tasks = rng.choice(TASKS, size=n).astype(object)
    return RoutingData(X, quality, cost, chars, list(MODELS), tasks)


def _reference(
    router: AttentionRouter, X: np.ndarray, chars: np.ndarray, tasks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Straightforward prediction with each member's training-time ``forward``, averaged and de-standardised."""
    x, ell = router._features(X, chars, tasks)
    with torch.no_grad():
        outputs = [net(x, ell) for net in router.members]
    quality = torch.stack([torch.sigmoid(logit) for logit, _ in outputs]).mean(0).double().numpy()
    log_cost = torch.stack([lc for _, lc in outputs]).mean(0).double().numpy()
    log_cost = log_cost * router.stats["logcost_std"] + router.stats["logcost_mean"]
    eps = router.config.cost_eps
    return quality, np.maximum(np.exp(log_cost) - eps, eps)


def _assert_matches(router: AttentionRouter, X: np.ndarray, chars: np.ndarray, tasks: np.ndarray | None,
                    **kwargs: int) -> None:
    q, c = router.predict(X, chars, tasks, **kwargs)
    q_ref, c_ref = _reference(router, X, chars, tasks)
    n, m = X.shape[0], len(router.models)
    for a in (q, c):
        assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (n, m)
    assert np.all((q > 0) & (q < 1)) and np.all(c > 0)
    np.testing.assert_allclose(q, q_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=0)


@pytest.fixture(scope="module", params=[False, True], ids=["no_task", "use_task"])
def router(request: pytest.FixtureRequest) -> AttentionRouter:
    return AttentionRouter(use_task=request.param, **SMALL).fit(_data(160), seed=3)


@pytest.mark.parametrize("n", [0, 1, 7, 97])
@pytest.mark.parametrize("batch_size", [None, 1, 16])
def test_predict_equals_member_forward(router: AttentionRouter, n: int, batch_size: int | None) -> None:
    """Any row count, including empty, one row and chunks that do not divide the rows."""
    data = _data(max(n, 1), seed=11)
    X, chars, tasks = data.X[:n], data.prompt_chars[:n], data.eval_names[:n]
    _assert_matches(router, X, chars, tasks, batch_size=batch_size)
    _assert_matches(router, X, chars, None, batch_size=batch_size)  # no task labels: the inferred tasks


def test_predict_with_unknown_tasks_and_extreme_lengths(router: AttentionRouter) -> None:
    data = _data(40, seed=5)
    tasks = np.array(["never-seen", "", *data.eval_names[2:]], dtype=object)
    chars = data.prompt_chars.copy()
    chars[:3] = [0, 1, 2_000_000]
    _assert_matches(router, data.X, chars, tasks)


def test_predict_follows_weight_changes(router: AttentionRouter) -> None:
    """Nothing is cached across calls: new weights (larger, so every non-linearity matters) are used at once."""
    data = _data(50, seed=9)
    before = router.predict(data.X, data.prompt_chars, data.eval_names)
    states = [{k: v.clone() for k, v in net.state_dict().items()} for net in router.members]
    generator = torch.Generator().manual_seed(0)
    try:
        for net, state in zip(router.members, states, strict=True):
            net.load_state_dict({k: v + 0.3 * torch.randn(v.shape, generator=generator) for k, v in state.items()})
        _assert_matches(router, data.X, data.prompt_chars, data.eval_names, batch_size=16)
        assert not np.allclose(router.predict(data.X, data.prompt_chars, data.eval_names)[0], before[0])
    finally:
        for net, state in zip(router.members, states, strict=True):
            net.load_state_dict(state)
    np.testing.assert_array_equal(router.predict(data.X, data.prompt_chars, data.eval_names)[0], before[0])


def test_predict_after_artifact_round_trip(router: AttentionRouter) -> None:
    data = _data(30, seed=13)
    restored = AttentionRouter.from_artifacts(*router.to_artifacts())
    _assert_matches(restored, data.X, data.prompt_chars, data.eval_names)
    np.testing.assert_array_equal(restored.predict(data.X, data.prompt_chars, data.eval_names)[1],
                                  router.predict(data.X, data.prompt_chars, data.eval_names)[1])


def test_attention_weights_still_work(router: AttentionRouter) -> None:
    data = _data(9, seed=2)
    weights = router.attention_weights(data.X, data.prompt_chars, data.eval_names)
    assert weights.shape == (9, len(MODELS)) and weights.dtype == np.float64
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


def test_read_only_vectors_are_used_without_a_copy_or_a_warning(router: AttentionRouter) -> None:
    """Vectors streamed from DuckDB/Arrow are read-only numpy arrays: same predictions, no torch warning, and the
    input is left as it was."""
    import warnings

    data = _data(20, seed=17)
    frozen = data.X.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q, c = router.predict(frozen, data.prompt_chars, data.eval_names)
        x, _ = router._features(frozen, data.prompt_chars, None)
    q_ref, c_ref = router.predict(data.X, data.prompt_chars, data.eval_names)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(c, c_ref)
    np.testing.assert_array_equal(frozen, data.X)
    if not router.config.use_task:  # without the task one-hot the features are the caller's memory itself
        assert x.data_ptr() == frozen.ctypes.data


def test_chunks_run_one_per_worker_thread_as_a_single_thread_would(
    router: AttentionRouter, torch_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 3 torch threads the chunks are shared out among 3 workers, each running torch single-threaded; the
    outputs are those of a one-thread run (to float32 rounding: a row mixed up between chunks or workers would be
    far off), and the thread count is restored afterwards."""
    data = _data(300, seed=21)
    seen: list[tuple[str, int]] = []
    chunk = EnsembleInference._chunk

    def spy(self: EnsembleInference, x: torch.Tensor, *args: torch.Tensor) -> None:
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        chunk(self, x, *args)

    monkeypatch.setattr(EnsembleInference, "_chunk", spy)
    torch.set_num_threads(1)
    alone = router.predict(data.X, data.prompt_chars, data.eval_names, batch_size=7)
    assert {name for name, _ in seen} == {threading.current_thread().name} and len(seen) == 43
    seen.clear()
    torch.set_num_threads(3)
    shared = router.predict(data.X, data.prompt_chars, data.eval_names, batch_size=7)
    assert torch.get_num_threads() == 3
    assert len(seen) == 43 and {threads for _, threads in seen} == {1}
    assert all(name.startswith("attention-predict") for name, _ in seen) and len({n for n, _ in seen}) >= 2
    for a, b in zip(alone, shared, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    _assert_matches(router, data.X, data.prompt_chars, data.eval_names, batch_size=7)


def test_a_failing_chunk_raises_and_restores_the_thread_count(
    router: AttentionRouter, torch_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk = EnsembleInference._chunk
    failed_in: list[str] = []

    def failing(self: EnsembleInference, x: torch.Tensor, *args: torch.Tensor) -> None:
        if x.shape[0] == 3:  # the last, short chunk of 98 rows
            failed_in.append(threading.current_thread().name)
            raise MemoryError("chunk failed")
        chunk(self, x, *args)

    monkeypatch.setattr(EnsembleInference, "_chunk", failing)
    torch.set_num_threads(2)
    data = _data(98, seed=4)
    with pytest.raises(MemoryError, match="chunk failed"):
        router.predict(data.X, data.prompt_chars, data.eval_names, batch_size=5)
    assert len(failed_in) == 1 and failed_in[0].startswith("attention-predict")
    assert torch.get_num_threads() == 2


def test_work_on_cores_keeps_item_order_and_drops_the_rest_after_an_error(torch_threads: None) -> None:
    """The helper behind prediction and training: results in item order from single-threaded workers; after a
    failure the items not yet started are not run, and the caller's thread count comes back."""
    torch.set_num_threads(2)

    def where(i: int) -> tuple[int, str, int]:
        time.sleep(0.001 * (i % 3))  # finish out of order
        return i * i, threading.current_thread().name, torch.get_num_threads()

    out = on_cores(where, range(12), "cores-test")
    assert [v for v, _, _ in out] == [i * i for i in range(12)]
    assert {t for _, _, t in out} == {1} and all(name.startswith("cores-test") for _, name, _ in out)
    assert torch.get_num_threads() == 2

    started: list[int] = []

    def failing(i: int) -> None:
        started.append(i)
        if i == 0:
            raise ValueError("item 0 failed")
        time.sleep(0.02)

    with pytest.raises(ValueError, match="item 0 failed"):
        on_cores(failing, range(200), "cores-test")
    assert 0 in started and len(started) < 20  # the other worker's item or two, not the 199 queued behind
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)  # one thread: the items run here, one after another
    assert [name for _, name, _ in on_cores(where, range(3), "cores-test")] == [threading.current_thread().name] * 3


def test_concurrent_predictions_share_the_thread_setting(router: AttentionRouter, torch_threads: None) -> None:
    """Predictions running at once in several threads of one process (a threaded Dask worker) each give their
    own answer, and torch's thread count is the caller's again when the last one is done."""
    torch.set_num_threads(2)
    inputs = [_data(120 + 10 * i, seed=30 + i) for i in range(6)]
    expected = [router.predict(d.X, d.prompt_chars, d.eval_names, batch_size=9) for d in inputs]
    start = threading.Barrier(len(inputs))

    def run(d: RoutingData) -> tuple[np.ndarray, np.ndarray]:
        start.wait()
        return router.predict(d.X, d.prompt_chars, d.eval_names, batch_size=9)

    with ThreadPoolExecutor(len(inputs)) as pool:
        got = list(pool.map(run, inputs))
    assert torch.get_num_threads() == 2
    for (q, c), (q_ref, c_ref) in zip(got, expected, strict=True):
        np.testing.assert_allclose(q, q_ref, rtol=1e-6, atol=0)
        np.testing.assert_allclose(c, c_ref, rtol=1e-6, atol=0)
