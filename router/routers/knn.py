"""k-nearest-neighbour router (RouterBench's kNN baseline), registered as ``knn5``, ``knn10``, ``knn40``.

For each query, the ``k`` training prompts with the highest cosine similarity are found; the predicted
quality (cost) of a model is the mean of those neighbours' *observed* scores (costs) for that model.
Neighbours that never saw the model (NaN) are skipped; if none of the ``k`` saw it, the model's global
training mean is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from router.routers import register
from router.routers.base import Router, RoutingData, to_tensor

if TYPE_CHECKING:
    import torch

__all__ = ["KNNRouter", "masked_neighbour_mean"]

#: The fitted arrays of :class:`KNNRouter`, saved as tensors of these names (the training prompts themselves).
_STATE = ("X", "quality", "cost", "quality_mean", "cost_mean")


def _normalise(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def masked_neighbour_mean(values: np.ndarray, neighbours: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Mean over each row's neighbours of ``values`` (n_train, m), skipping NaN; ``fallback`` (m,) if none.

    ``neighbours`` is (n, k) integer indices into ``values``; the result is (n, m).
    """
    picked = values[neighbours]  # (n, k, m)
    observed = ~np.isnan(picked)
    counts = observed.sum(axis=1)
    sums = np.where(observed, picked, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return np.where(counts > 0, means, fallback[None, :])


@register("knn5", k=5)
@register("knn10", k=10)
@register("knn40", k=40)
class KNNRouter(Router):
    """Cosine kNN over prompt embeddings with masked (NaN-skipping) neighbour means.

    Args:
        k: number of neighbours.
        batch_size: query rows per similarity block (bounds memory at ``batch_size × n_train`` floats).
    """

    name: ClassVar[str] = "knn"

    def __init__(self, k: int = 10, batch_size: int = 2048) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = k
        self.batch_size = batch_size

    def fit(self, data: RoutingData, seed: int = 42) -> KNNRouter:  # noqa: ARG002 - deterministic
        self.models = list(data.models)
        self._X = _normalise(data.X)
        self._quality = np.asarray(data.quality, dtype=np.float64)
        self._cost = np.asarray(data.cost, dtype=np.float64)
        self._quality_mean = _nan_column_mean(self._quality, default=0.5)
        self._cost_mean = _nan_column_mean(self._cost, default=0.0)
        return self

    def neighbours(self, X: np.ndarray) -> np.ndarray:
        """Indices (n, k') of the ``k' = min(k, n_train)`` most similar training prompts, best first."""
        Xq = _normalise(X)
        k = min(self.k, self._X.shape[0])
        out = np.empty((Xq.shape[0], k), dtype=np.int64)
        for start in range(0, Xq.shape[0], self.batch_size):
            sims = Xq[start : start + self.batch_size] @ self._X.T
            if k < sims.shape[1]:
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(k), sims.shape).copy()
            # Order the k by decreasing similarity, ties by training index (deterministic).
            order = np.lexsort((top, -np.take_along_axis(sims, top, axis=1)), axis=1)
            out[start : start + self.batch_size] = np.take_along_axis(top, order, axis=1)
        return out

    def predict(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None = None  # noqa: ARG002
                ) -> tuple[np.ndarray, np.ndarray]:
        idx = self.neighbours(X)
        quality = masked_neighbour_mean(self._quality, idx, self._quality_mean)
        cost = masked_neighbour_mean(self._cost, idx, self._cost_mean)
        return np.clip(quality, 0.0, 1.0), cost

    def to_artifacts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The training prompts' embeddings, scores and costs and the per-model means as tensors (their own
        dtypes); the config holds ``k`` and ``batch_size``."""
        if not hasattr(self, "_X"):
            raise RuntimeError("KNNRouter is not fitted")
        tensors = {key: to_tensor(getattr(self, f"_{key}")) for key in _STATE}
        return tensors, self.artifact_config({"k": self.k, "batch_size": self.batch_size})

    @classmethod
    def from_artifacts(cls, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> KNNRouter:
        router = cls.from_artifact_config(config)
        for key in _STATE:
            setattr(router, f"_{key}", tensors[key].numpy())
        return router


def _nan_column_mean(values: np.ndarray, default: float) -> np.ndarray:
    """Per-column mean ignoring NaN; ``default`` for columns with no observation."""
    observed = ~np.isnan(values)
    counts = observed.sum(axis=0)
    sums = np.where(observed, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), default)
