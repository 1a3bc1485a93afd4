"""Changes to the attention router that are not :class:`AttentionConfig` options, cross-validated on the train split.

Each variant (:data:`VARIANTS`) is a small subclass of the default attention router, fitted on the same folds as
the default (``bench.tuning.fold_splits``, stratified by eval set) and scored on the held-out fold with RouterBench's
protocol: per-eval AIQ with the linear reward and with the default exponential one, and the pooled cost ratio at
the best single model's quality (``router.evaluation``). The test split is never read. ``docs/router.md`` lists the
figures::

    python -m bench.ablations /tmp/llm/llmrouter.npz --folds 5 --seed 42

* ``length``: the standardised log prompt length as one more input of the encoder (by default it reaches only the
  cost head);
* ``centred``: the embeddings minus their mean over the fitted rows (MiniLM vectors share a large common direction);
* ``cosine``: the learning rate decayed to zero along a half cosine over the fit's optimiser steps;
* ``cosine_lr4e-3``: the same from twice the default learning rate;
* ``batch64``: mini-batches of 64 prompts instead of 128 (an ``AttentionConfig`` option, for comparison);
* ``knn_inputs``: per model, the mean observed quality of the 40 most similar fitted prompts (leave-one-out for the
  fitted rows themselves) as more encoder inputs: what ``knn40`` knows, for the network to weigh.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from dataclasses import replace
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.tuning import fold_splits, load_npz
from router.evaluation import evaluate
from router.rewards import get_reward
from router.routers.attention import AttentionRouter, CrossAttentionNet
from router.routers.base import RoutingData

__all__ = ["VARIANTS", "ablations", "main", "make", "print_table"]


class LengthInput(AttentionRouter):
    """The standardised log prompt length appended to the encoder's input."""

    def _features(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        x, ell = super()._features(X, prompt_chars, tasks)
        return torch.cat([x, ell[:, None]], dim=1), ell

    def _new_member(self) -> CrossAttentionNet:
        d_in = self.d_embed + (len(self.tasks) if self.config.use_task else 0) + 1
        return CrossAttentionNet(d_in, len(self.models), self.config)


class Centred(AttentionRouter):
    """Embeddings centred on their mean over the fitted rows (the task one-hot and the classifier see raw ones)."""

    mean: torch.Tensor | None = None

    def fit(self, data: RoutingData, seed: int = 42) -> Centred:
        self.mean = torch.as_tensor(np.asarray(data.X, dtype=np.float32).mean(axis=0))
        return super().fit(data, seed)

    def _features(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        x, ell = super()._features(X, prompt_chars, tasks)
        d = self.d_embed
        return torch.cat([x[:, :d] - self.mean, x[:, d:]], dim=1), ell


@contextlib.contextmanager
def _cosine_adamw(total_steps: int) -> Iterator[None]:
    """While open, every ``torch.optim.AdamW`` made sets its learning rate before each step to
    ``lr · ½(1 + cos(π · step / total_steps))`` (the attention fit builds its optimiser from ``torch.optim``)."""
    plain = torch.optim.AdamW

    class CosineAdamW(plain):  # type: ignore[misc, valid-type]
        def __init__(self, params: Any, lr: float, **kwargs: Any) -> None:
            super().__init__(params, lr=lr, **kwargs)
            self.start_lr, self.steps = lr, 0

        def step(self, closure: Callable[[], float] | None = None) -> Any:
            self.steps += 1
            for group in self.param_groups:
                group["lr"] = self.start_lr * 0.5 * (1.0 + math.cos(math.pi * min(self.steps, total_steps)
                                                                     / total_steps))
            return super().step(closure)

    torch.optim.AdamW = CosineAdamW
    try:
        yield
    finally:
        torch.optim.AdamW = plain


class Cosine(AttentionRouter):
    """The learning rate decayed along a half cosine over the fit's steps (every fitted row, every epoch)."""

    def fit(self, data: RoutingData, seed: int = 42) -> Cosine:
        observed = int(((~np.isnan(data.quality)).any(axis=1) | (~np.isnan(data.cost)).any(axis=1)).sum())
        steps = self.config.max_epochs * math.ceil(observed / self.config.batch_size)
        with _cosine_adamw(max(steps, 1)):
            return super().fit(data, seed)


class KnnInputs(AttentionRouter):
    """Per model, the mean observed quality of the ``k`` most cosine-similar fitted prompts (minus that model's mean),
    appended to the encoder's input; a fitted prompt's own row is left out of its neighbours (leave-one-out), so the
    network does not learn to read its own label."""

    k = 40

    def fit(self, data: RoutingData, seed: int = 42) -> KnnInputs:
        bank = np.asarray(data.X, dtype=np.float32)
        self.bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
        quality = np.asarray(data.quality, dtype=np.float64)
        self.seen = ~np.isnan(quality)
        self.bank_q = np.nan_to_num(quality)
        self.means = np.where(self.seen.any(axis=0), self.bank_q.sum(0) / np.maximum(self.seen.sum(0), 1), 0.5)
        self._leave_one_out = True
        try:
            return super().fit(data, seed)
        finally:
            self._leave_one_out = False

    def _neighbour_quality(self, X: np.ndarray) -> np.ndarray:
        x = np.asarray(X, dtype=np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        skip = 1 if getattr(self, "_leave_one_out", False) else 0
        k = min(self.k, self.bank.shape[0] - skip)
        out = np.zeros((x.shape[0], self.bank_q.shape[1]), dtype=np.float32)
        if k <= 0:
            return out
        for lo in range(0, x.shape[0], 2048):
            sims = x[lo:lo + 2048] @ self.bank.T
            top = np.argpartition(-sims, k + skip - 1, axis=1)[:, :k + skip]
            order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
            top = np.take_along_axis(top, order, axis=1)[:, skip:]
            seen = self.seen[top]  # (rows, k, m)
            total = (self.bank_q[top] * seen).sum(axis=1)
            count = seen.sum(axis=1)
            out[lo:lo + 2048] = np.where(count > 0, total / np.maximum(count, 1), self.means) - self.means
        return out

    def _features(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        x, ell = super()._features(X, prompt_chars, tasks)
        return torch.cat([x, torch.from_numpy(self._neighbour_quality(X))], dim=1), ell

    def _new_member(self) -> CrossAttentionNet:
        d_in = self.d_embed + (len(self.tasks) if self.config.use_task else 0) + self.bank_q.shape[1]
        return CrossAttentionNet(d_in, len(self.models), self.config)


#: name → a fresh, unfitted router of that variant (``default`` is the registered attention router).
VARIANTS: dict[str, Callable[[], AttentionRouter]] = {
    "default": AttentionRouter,
    "length": LengthInput,
    "centred": Centred,
    "cosine": Cosine,
    "cosine_lr4e-3": lambda: Cosine(lr=4e-3),
    "batch64": lambda: AttentionRouter(batch_size=64),
    "knn_inputs": KnnInputs,
}


def make(name: str, **overrides: Any) -> AttentionRouter:
    """A fresh router of variant ``name`` with ``overrides`` applied to its config (tests use small fits)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {sorted(VARIANTS)}")
    router = VARIANTS[name]()
    router.config = replace(router.config, **overrides)
    return router


def ablations(train: RoutingData, n_folds: int, seed: int, names: Sequence[str] = tuple(VARIANTS),
              **overrides: Any) -> dict[str, dict[str, list[float | None]]]:
    """Per variant, per fold: ``linear`` and ``exponential`` AIQ and ``pooled`` cost ratio at the best single
    model's quality (``None`` where never reached). ``overrides`` go to every variant's config (tests)."""
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    exponential = get_reward("exponential")
    out: dict[str, dict[str, list[float | None]]] = {n: {"linear": [], "exponential": [], "pooled": []}
                                                     for n in names}
    for fit, val in fold_splits(train, n_folds, seed):
        runs = {}
        for name in names:
            q, c = make(name, **overrides).fit(fit, seed=seed).predict(val.X, val.prompt_chars, val.eval_names)
            runs[f"{name} linear"], runs[f"{name} exponential"] = (q, c, "linear"), (q, c, exponential)
        metrics = evaluate(runs, val.quality, val.cost, val.eval_names, val.models).metrics
        for name in names:
            for reward in ("linear", "exponential"):
                out[name][reward].append(float(metrics["routers"][f"{name} {reward}"]["aiq"]))
            out[name]["pooled"].append(metrics["pooled"]["routers"][f"{name} linear"]["cost_ratio_at_best_quality"])
    return out


def print_table(scores: dict[str, dict[str, list[float | None]]], n_folds: int) -> None:
    """The markdown table of :func:`ablations` (docs/router.md), each variant against ``default`` fold by fold."""
    base = np.asarray(scores["default"]["linear"], dtype=np.float64) if "default" in scores else None
    print(f"| variant | linear AIQ (± std over {n_folds} folds) | vs default: mean Δ (folds ahead) | exponential AIQ "
          "| pooled cost ratio at best quality (folds reaching it) |")
    print("|---|---|---|---|---|")
    for name, by in scores.items():
        linear = np.asarray(by["linear"], dtype=np.float64)
        delta = "" if base is None or name == "default" else \
            f"{(linear - base).mean():+.4f} ({int((linear > base).sum())}/{linear.size})"
        reached = [v for v in by["pooled"] if v is not None]
        pooled = f"{np.mean(reached):.3f} ({len(reached)}/{linear.size})" if reached else f"never (0/{linear.size})"
        print(f"| `{name}` | {linear.mean():.4f} ± {linear.std():.4f} | {delta} | "
              f"{np.mean(by['exponential']):.4f} | {pooled} |")


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, list[float | None]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", type=Path, help="RoutingData .npz (bench.tuning.load_npz)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=42, help="fold and fit seed")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the train split")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train, _ = load_npz(args.npz)
    scores = ablations(train, args.folds, args.seed, [v for v in args.variants.split(",") if v])
    print_table(scores, args.folds)
    return scores


if __name__ == "__main__":
    main()
