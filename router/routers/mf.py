"""Linear matrix-factorisation router, registered as ``mf``.

Quality: ``sigmoid(⟨W x, v_j⟩ + b_j)`` with a shared projection ``W`` (d → k) of the prompt embedding ``x`` and a
learned vector ``v_j`` and bias ``b_j`` per model, trained with masked binary cross-entropy (full-batch AdamW,
early stopping on a held-out 10% of prompts).

Cost: per model, a ridge regression of ``log(cost)`` on ``[x, log(1 + prompt_chars)]`` fitted on that model's
observed rows (closed form); prediction is ``exp`` of it. Prompt length drives price, so this beats a constant
mean cost; a model with fewer than ``min_cost_rows`` observed costs falls back to its mean log cost.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from router.routers import register
from router.routers.base import Router, RoutingData, to_tensor

__all__ = ["MFRouter"]

_COST_EPS = 1e-7  # dollars added before taking logs


class _MF(nn.Module):
    def __init__(self, d_in: int, n_models: int, rank: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, rank, bias=False)
        self.model_vec = nn.Parameter(torch.randn(n_models, rank) * 0.1)
        self.model_bias = nn.Parameter(torch.zeros(n_models))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) @ self.model_vec.T + self.model_bias


@register("mf")
class MFRouter(Router):
    """Bilinear (matrix-factorisation) quality model + per-model ridge on log cost.

    Args:
        rank: latent dimension ``k``.
        weight_decay: AdamW weight decay.
        lr: AdamW learning rate.
        max_epochs: full-batch steps at most.
        patience: early-stopping patience in steps (on the held-out prompts' loss).
        ridge: L2 penalty of the cost regressions.
        min_cost_rows: fewest observed costs for a model's regression.
    """

    name: ClassVar[str] = "mf"

    def __init__(
        self,
        rank: int = 16,
        weight_decay: float = 1e-3,
        lr: float = 1e-2,
        max_epochs: int = 1000,
        patience: int = 50,
        ridge: float = 1.0,
        min_cost_rows: int = 10,
    ) -> None:
        self.rank = rank
        self.weight_decay = weight_decay
        self.lr = lr
        self.max_epochs = max_epochs
        self.patience = patience
        self.ridge = ridge
        self.min_cost_rows = min_cost_rows

    @staticmethod
    def _cost_design(X: np.ndarray, prompt_chars: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        return np.column_stack([X, np.log1p(np.asarray(prompt_chars, dtype=np.float64)), np.ones(n)])

    def fit(self, data: RoutingData, seed: int = 42) -> MFRouter:
        self.models = list(data.models)
        self._fit_quality(data, seed)
        self._fit_cost(data)
        return self

    def _fit_quality(self, data: RoutingData, seed: int) -> None:
        quality = np.asarray(data.quality, dtype=np.float64)
        mask = ~np.isnan(quality)
        rows = np.flatnonzero(mask.any(axis=1))
        rng = np.random.default_rng(seed)
        held = np.zeros(rows.size, dtype=bool)
        if rows.size >= 10:
            held[rng.choice(rows.size, size=max(1, rows.size // 10), replace=False)] = True
        x = torch.as_tensor(np.asarray(data.X, dtype=np.float32)[rows])
        y = torch.as_tensor(np.nan_to_num(quality[rows]).clip(0.0, 1.0), dtype=torch.float32)
        w = torch.as_tensor(mask[rows], dtype=torch.float32)
        fit_rows, val_rows = torch.as_tensor(~held), torch.as_tensor(held)

        def loss(net: _MF, sel: torch.Tensor) -> torch.Tensor:
            bce = F.binary_cross_entropy_with_logits(net(x[sel]), y[sel], reduction="none")
            return (bce * w[sel]).sum() / w[sel].sum().clamp_min(1.0)

        torch.manual_seed(seed)
        net = _MF(x.shape[1], len(self.models), self.rank)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best, best_step, best_state = math.inf, 0, copy.deepcopy(net.state_dict())
        for step in range(1, self.max_epochs + 1):
            opt.zero_grad(set_to_none=True)
            loss(net, fit_rows).backward()
            opt.step()
            if not held.any():
                continue
            with torch.no_grad():
                val = float(loss(net, val_rows))
            if val < best - 1e-6:
                best, best_step, best_state = val, step, copy.deepcopy(net.state_dict())
            elif step - best_step >= self.patience:
                break
        if held.any():
            net.load_state_dict(best_state)
        self._net = net.eval()

    def _fit_cost(self, data: RoutingData) -> None:
        cost = np.asarray(data.cost, dtype=np.float64)
        A = self._cost_design(data.X, data.prompt_chars)
        log_cost = np.log(np.maximum(np.nan_to_num(cost), 0.0) + _COST_EPS)
        observed = ~np.isnan(cost)
        all_obs = log_cost[observed]
        default = float(all_obs.mean()) if all_obs.size else math.log(_COST_EPS)
        penalty = self.ridge * np.eye(A.shape[1])
        penalty[-1, -1] = 0.0  # do not shrink the intercept
        coef = np.zeros((A.shape[1], len(self.models)))
        for j in range(len(self.models)):  # one closed-form solve per model
            rows = observed[:, j]
            if rows.sum() < self.min_cost_rows:
                coef[-1, j] = log_cost[rows, j].mean() if rows.any() else default
                continue
            Aj, yj = A[rows], log_cost[rows, j]
            coef[:, j] = np.linalg.solve(Aj.T @ Aj + penalty, Aj.T @ yj)
        self._cost_coef = coef

    def predict(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None = None  # noqa: ARG002
                ) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logits = self._net(torch.as_tensor(np.asarray(X, dtype=np.float32)))
        quality = torch.sigmoid(logits).double().numpy()
        log_cost = self._cost_design(X, prompt_chars) @ self._cost_coef
        return quality, np.maximum(np.exp(log_cost) - _COST_EPS, _COST_EPS)

    def to_artifacts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The quality network's parameters (``net.<name>``) and the cost regressions' coefficients
        (``cost_coef``, (d + 2, m) float64)."""
        if not hasattr(self, "_net"):
            raise RuntimeError("MFRouter is not fitted")
        tensors = {f"net.{k}": v.detach().cpu().contiguous().clone() for k, v in self._net.state_dict().items()}
        tensors["cost_coef"] = to_tensor(self._cost_coef)
        hyperparameters = {"rank": self.rank, "weight_decay": self.weight_decay, "lr": self.lr,
                           "max_epochs": self.max_epochs, "patience": self.patience, "ridge": self.ridge,
                           "min_cost_rows": self.min_cost_rows}
        return tensors, self.artifact_config(hyperparameters, d_in=int(self._net.proj.in_features))

    @classmethod
    def from_artifacts(cls, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> MFRouter:
        router = cls.from_artifact_config(config)
        net = _MF(int(config["d_in"]), len(router.models), router.rank)
        state = {k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")}
        net.load_state_dict(state, strict=True)
        router._net = net.eval()
        router._cost_coef = tensors["cost_coef"].numpy()
        return router
