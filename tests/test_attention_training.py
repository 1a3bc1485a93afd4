"""The attention router's members train in parallel threads with their own dropout generators: the fitted weights
are those of a one-thread, one-member-after-another fit, bit for bit, whatever the number of threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from router.routers.attention import AttentionRouter, CrossAttentionNet, _MemberDropout
from router.routers.base import RoutingData

#: Dropout on, several members, a held-out slice with early stopping, task one-hot: every path of ``fit``.
CONFIG = {"hidden": 24, "model_dim": 6, "attn_dim": 10, "max_epochs": 4, "n_members": 3, "batch_size": 16,
          "dropout": 0.3, "val_fraction": 0.2, "patience": 2, "use_task": True}


def _data(n: int, seed: int) -> RoutingData:
    """Unit vectors, 0/1 quality and log-uniform costs for 4 models, a fifth of the pairs unobserved, 3 tasks."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    quality = (rng.random((n, 4)) < 0.6).astype(np.float32)
    cost = np.exp(rng.uniform(np.log(1e-5), np.log(1e-2), size=(n, 4))).astype(np.float32)
    quality[rng.random((n, 4)) < 0.2] = np.nan
    cost[rng.random((n, 4)) < 0.2] = np.nan
    tasks = rng.choice(["task_a", "task_b", "task_c"], size=n).astype(object)
    return RoutingData(X, quality, cost, rng.integers(10, 5000, size=n), ["a", "b", "c", "d"], tasks)


def _weights(router: AttentionRouter) -> list[dict[str, torch.Tensor]]:
    return [net.state_dict() for net in router.members]


def test_fit_is_the_same_whatever_the_thread_count(torch_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(200, seed=8)
    trained_in: list[tuple[str, int]] = []
    fit_member = AttentionRouter._fit_member

    def spy(self: AttentionRouter, *args: object, **kwargs: object) -> object:
        trained_in.append((threading.current_thread().name, torch.get_num_threads()))
        return fit_member(self, *args, **kwargs)

    monkeypatch.setattr(AttentionRouter, "_fit_member", spy)
    fits = {}
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        trained_in.clear()
        fits[threads] = AttentionRouter(**CONFIG).fit(data, seed=11)
        assert torch.get_num_threads() == threads  # restored
        names = {name for name, _ in trained_in}
        assert len(trained_in) == 3 and {n for _, n in trained_in} == {1}
        if threads == 1:
            assert names == {threading.current_thread().name}
        else:
            assert all(name.startswith("attention-fit") for name in names)
    one = fits[1]
    for threads in (2, 3):
        assert fits[threads].history == one.history
        for a, b in zip(_weights(one), _weights(fits[threads]), strict=True):
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    for net in one.members:  # no generator is kept after the fit (artifacts and copies stay plain)
        assert all(m.generator is None for m in net.modules() if isinstance(m, _MemberDropout))
    # members differ from each other (each has its own seed and its own dropout stream)
    assert not torch.equal(one.members[0].pair_prompt.weight, one.members[1].pair_prompt.weight)


def test_member_dropout_draws_what_f_dropout_draws_from_the_same_state() -> None:
    torch.manual_seed(123)
    x = torch.randn(64, 11, 24)
    state = torch.get_rng_state()
    expected = F.dropout(x, 0.3, training=True)
    module = _MemberDropout(0.3)
    generator = torch.Generator()
    generator.set_state(state)
    module.generator = generator
    torch.testing.assert_close(module(x), expected, rtol=0, atol=0)
    assert (module(x) == 0).any()  # it is a different draw the second time, from the same stream
    module.eval()
    assert module(x) is x


def test_a_fitted_member_predicts_the_same_after_a_deepcopy() -> None:
    """Nets hold no generator once fitted, so they copy and compare like plain modules."""
    import copy

    router = AttentionRouter(**{**CONFIG, "n_members": 1}).fit(_data(60, seed=2), seed=1)
    clone = copy.deepcopy(router.members[0])
    assert isinstance(clone, CrossAttentionNet)
    x = torch.randn(5, router.members[0].encoder[0].in_features)
    ell = torch.randn(5)
    with torch.no_grad():
        for a, b in zip(router.members[0](x, ell), clone(x, ell), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fit_logs_progress_by_member_and_epoch(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Training writes progress lines (every ROUTER_PROGRESS_SECONDS; 0 here: one per member epoch)."""
    import logging

    from router.routers.attention import AttentionConfig

    monkeypatch.setenv("ROUTER_PROGRESS_SECONDS", "0")
    cfg = AttentionConfig(n_members=2, max_epochs=3, val_fraction=0.0)
    with caplog.at_level(logging.INFO, logger="router.routers.attention"):
        AttentionRouter(cfg).fit(_data(60, seed=3))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6 and lines[-1].startswith("training attention (2 members × ≤3 epochs): 6/6 (100%) epochs")
    for member in (1, 2):
        assert [int(line.split(" at epoch ")[1].split(",")[0]) for line in lines
                if f"member {member}/2 at epoch" in line] == [1, 2, 3]


def test_stats_init_starts_the_model_embeddings_from_each_models_statistics() -> None:
    """``model_init="stats"``: the embeddings start as the principal components of per-model statistics (so two
    models with the same per-task record start equal), at the random init's spread; the fit round-trips."""
    from router.routers.attention import _model_statistics, _stats_embedding

    data = _data(240, seed=3)
    data.quality[:, 3] = data.quality[:, 1]  # models b and d: the same observed record ...
    data.cost[:, 3] = data.cost[:, 1]  # ... and costs
    q = torch.as_tensor(np.nan_to_num(data.quality), dtype=torch.float32)
    qm = torch.as_tensor(~np.isnan(data.quality), dtype=torch.float32)
    c = torch.as_tensor(np.log(np.nan_to_num(data.cost, nan=1.0)), dtype=torch.float32)
    cm = torch.as_tensor(~np.isnan(data.cost), dtype=torch.float32)
    labels = np.asarray(data.eval_names).astype(str)
    stats = _model_statistics(q, qm, c, cm, labels)
    assert stats.shape == (4, 3 + 2)  # three tasks, overall quality, cost
    for t, task in enumerate(np.unique(labels)):  # column t: mean observed quality on task t, standardised over models
        rows = labels == task
        raw = np.nanmean(data.quality[rows], axis=0)
        assert np.allclose(stats[:, t], (raw - raw.mean()) / raw.std(), atol=1e-6)
    np.testing.assert_allclose(stats[1], stats[3])

    random_init = torch.randn(4, 6) * 0.1
    emb = _stats_embedding(stats, random_init)
    rank = np.linalg.matrix_rank(stats - stats.mean(axis=0), tol=1e-9)
    assert rank == 2  # four models, two of them alike
    assert torch.equal(emb[:, rank:], random_init[:, rank:])  # the columns beyond the stats' rank stay random
    torch.testing.assert_close(emb[1, :rank], emb[3, :rank])
    assert float(emb[:, :rank].std(correction=0)) == pytest.approx(float(random_init.std(correction=0)), rel=1e-5)
    gram = emb[:, :rank].double().numpy() @ emb[:, :rank].double().numpy().T  # PCA keeps the stats' geometry
    centred = stats - stats.mean(axis=0)
    np.testing.assert_allclose(gram / gram.max(), (centred @ centred.T) / (centred @ centred.T).max(), atol=1e-5)

    router = AttentionRouter(**{**CONFIG, "model_init": "stats"}).fit(data, seed=5)
    again = AttentionRouter(**{**CONFIG, "model_init": "stats"}).fit(data, seed=5)
    for a, b in zip(_weights(router), _weights(again), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    tensors, config = router.to_artifacts()
    rebuilt = AttentionRouter.from_artifacts(tensors, config)
    assert rebuilt.config.model_init == "stats"
    q1, c1 = router.predict(data.X, data.prompt_chars, data.eval_names)
    q2, c2 = rebuilt.predict(data.X, data.prompt_chars, data.eval_names)
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(c1, c2)


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_task_dropout_zeroes_the_task_one_hot_of_that_share_of_training_rows(share: float, monkeypatch) -> None:
    """``task_dropout``: the training forward passes see the task one-hot zeroed on about that share of rows (the
    prompt-only path is trained too); evaluation passes and ``task_dropout=0`` never zero it."""
    seen: list[tuple[bool, torch.Tensor]] = []
    forward = CrossAttentionNet.forward

    def spy(self: CrossAttentionNet, x: torch.Tensor, loglen: torch.Tensor):  # noqa: ANN202
        seen.append((self.training, x[:, 16:].sum(dim=1) == 0))  # 16 embedding columns, then the task one-hot
        return forward(self, x, loglen)

    monkeypatch.setattr(CrossAttentionNet, "forward", spy)
    config = {**CONFIG, "n_members": 1, "val_fraction": 0.2, "max_epochs": 3, "task_dropout": share}
    AttentionRouter(**config).fit(_data(400, seed=2), seed=4)
    train_rows = torch.cat([zeroed for training, zeroed in seen if training])
    eval_rows = torch.cat([zeroed for training, zeroed in seen if not training])
    assert train_rows.numel() > 900 and not eval_rows.any()  # every labelled row keeps its task when validated
    assert abs(float(train_rows.float().mean()) - share) < 0.06
