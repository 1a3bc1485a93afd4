"""The one interface every router implements, and the data it trains on.

A router sees prompt embeddings (plus the prompt length, which matters for cost) and returns, for every
(prompt, model) pair, a predicted quality in [0, 1] and a predicted cost in dollars. Choosing a model from
those predictions is the reward's job (``router.rewards``), so every router is evaluated the same way.

Every router also saves its fitted state as named tensors and a JSON-able config (:meth:`Router.to_artifacts`)
and is rebuilt from them (:meth:`Router.from_artifacts`): ``router.registry.packaging`` writes them as a
safetensors file and a JSON file (no pickle), whatever the router.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class RoutingData:
    """Prompts × models. ``quality``/``cost`` hold NaN where a (prompt, model) pair was not observed.

    RouterBench rows are dense (every model observed); production logs are sparse (usually one model per
    prompt). Routers must train on observed pairs only.
    """

    X: np.ndarray  # (n, d) float32, L2-normalised prompt embeddings
    quality: np.ndarray  # (n, m) float32 in [0, 1] or NaN
    cost: np.ndarray  # (n, m) float32 dollars >= 0 or NaN
    prompt_chars: np.ndarray  # (n,) int, prompt length in characters
    models: list[str]  # m model names, column order of quality/cost
    eval_names: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))  # (n,) task label or ""
    prompt_ids: list[str] = field(default_factory=list)  # (n,) store keys, when read from the store
    template_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))  # (n,) stripped template or ""

    def __post_init__(self) -> None:
        n, m = self.quality.shape
        if self.X.shape[0] != n or self.cost.shape != (n, m) or self.prompt_chars.shape != (n,):
            raise ValueError(
                f"inconsistent shapes: X {self.X.shape}, quality {self.quality.shape}, "
                f"cost {self.cost.shape}, prompt_chars {self.prompt_chars.shape}"
            )
        if len(self.models) != m:
            raise ValueError(f"{len(self.models)} model names for {m} columns")
        if self.eval_names.size == 0:
            self.eval_names = np.full(n, "", dtype=object)
        if self.template_ids.size == 0:
            self.template_ids = np.full(n, "", dtype=object)

    @property
    def n(self) -> int:
        return self.quality.shape[0]

    def subset(self, idx: np.ndarray) -> RoutingData:
        return RoutingData(
            self.X[idx], self.quality[idx], self.cost[idx], self.prompt_chars[idx], list(self.models),
            self.eval_names[idx], [self.prompt_ids[i] for i in np.asarray(idx).ravel()] if self.prompt_ids else [],
            self.template_ids[idx],
        )


class Router(ABC):
    """Fit on observed (prompt, model) outcomes; predict quality and cost for every pair."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, data: RoutingData, seed: int = 42) -> Router:
        """Train on ``data`` (NaN = unobserved, masked). Deterministic for a given seed."""

    @abstractmethod
    def predict(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(quality_hat, cost_hat)``, each (n, m) float, for the models seen in ``fit`` (same order).

        ``tasks`` (a task label per row, "" when unknown) is offered to every router; routers that do not use
        task labels ignore it.
        """

    @abstractmethod
    def to_artifacts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The fitted state: named tensors (contiguous, on the CPU, ready for ``safetensors.torch.save_file``) and
        a JSON-able config holding ``router`` (:attr:`name`), ``format`` (:attr:`artifact_format`),
        ``hyperparameters`` and ``models``, from which :meth:`from_artifacts` rebuilds a router whose predictions
        are identical. Raises ``RuntimeError`` on a router that is not fitted."""

    @classmethod
    @abstractmethod
    def from_artifacts(cls, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> Router:
        """A fitted router rebuilt from :meth:`to_artifacts` output (e.g. after a safetensors/JSON round trip).
        Raises ``ValueError`` when ``config`` is not this router's artifact of its current format."""

    #: Bumped by a router whenever its artifact layout changes incompatibly.
    artifact_format: ClassVar[int] = 1

    @classmethod
    def check_artifact_config(cls, config: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` unless ``config`` names this router and its current artifact format."""
        if config.get("router") != cls.name or int(config.get("format", -1)) != cls.artifact_format:
            raise ValueError(f"not an {cls.name!r} artifact of format {cls.artifact_format}: {config.get('router')!r}")

    def artifact_config(self, hyperparameters: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """The config keys every router's artifacts hold (``router``, ``format``, ``hyperparameters``, ``models``),
        then ``extra``."""
        return {"router": self.name, "format": self.artifact_format, "hyperparameters": dict(hyperparameters),
                "models": list(self.models), **extra}

    @classmethod
    def from_artifact_config(cls, config: Mapping[str, Any]) -> Self:
        """A router of ``config``'s hyper-parameters and models, its fitted state still to be set
        (:meth:`check_artifact_config` first)."""
        cls.check_artifact_config(config)
        router = cls(**config["hyperparameters"])
        router.models = [str(m) for m in config["models"]]
        return router

    models: list[str]


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A contiguous CPU tensor holding a copy of ``array`` (same dtype): a router's fitted NumPy state as artifacts."""
    import torch  # noqa: PLC0415 - only routers that save NumPy state need it here

    return torch.from_numpy(np.array(array, copy=True, order="C"))
