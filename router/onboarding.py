"""Onboard a new model into a fitted attention router: learn its embedding row, the rest of the network frozen.

A cross-attention router describes every model of its pool by one learned row of ``model_emb`` (its quality
path through the pair fusion, its cost path through ``cost_affine``, and its key/value in the attention). A
model the router has never seen therefore needs only a new row: :func:`onboard` copies the router, appends
one row per ensemble member, and fits that row alone on the new model's scored outcomes (a few seconds on a
CPU), every other parameter frozen (bitwise unchanged). The new row also enters the attention over the pool,
which shifts every prompt's context a little; a retention term keeps that context, and with it the existing
models' predictions, where the original router had it on the onboarding prompts.

The row starts from the existing model whose row already fits the new outcomes best (lowest quality + cost
loss on them), then Adam fits it full-batch for a fixed number of steps, on the outcomes left after
:func:`holdout_split` has set a seeded slice aside for the gate (``router.registry.gate``).

``docs/router.md`` ("Onboarding a new model") has the design and the measured figures (``python -m
bench.onboarding``).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from router.errors import RouterError

if TYPE_CHECKING:
    import torch

    from router.registry.gate import HeldOutCheck

    from router.routers.attention import AttentionRouter, CrossAttentionNet

__all__ = ["NotEnoughOutcomes", "OnboardingResult", "Outcomes", "held_out_check", "holdout_split", "onboard"]

log = logging.getLogger(__name__)


class NotEnoughOutcomes(RouterError):
    """The new model has fewer scored outcomes than onboarding needs (``ROUTER_ONBOARD_MIN_OUTCOMES``)."""


@dataclass(frozen=True)
class Outcomes:
    """A model's scored outcomes: one row per (prompt, this model), with the prompt's vector."""

    X: np.ndarray  # (n, d) prompt embeddings
    prompt_chars: np.ndarray  # (n,)
    quality: np.ndarray  # (n,) in [0, 1]
    cost: np.ndarray  # (n,) dollars >= 0, NaN = not recorded
    tasks: np.ndarray | None = None  # (n,) task labels, for routers fitted with use_task

    def __post_init__(self) -> None:
        n = len(self.quality)
        if self.X.ndim != 2 or self.X.shape[0] != n or len(self.prompt_chars) != n or len(self.cost) != n:
            raise ValueError(f"inconsistent outcome shapes: X {self.X.shape}, quality ({n},), cost "
                             f"({len(self.cost)},), prompt_chars ({len(self.prompt_chars)},)")
        if self.tasks is not None and len(self.tasks) != n:
            raise ValueError(f"{len(self.tasks)} task labels for {n} outcomes")

    @property
    def n(self) -> int:
        return len(self.quality)

    def take(self, idx: np.ndarray) -> Outcomes:
        return Outcomes(self.X[idx], self.prompt_chars[idx], self.quality[idx], self.cost[idx],
                        None if self.tasks is None else self.tasks[idx])


@dataclass(frozen=True)
class OnboardingResult:
    """The extended router, what it was fitted on and how long it took."""

    router: AttentionRouter
    model: str
    n_fit: int  # outcomes the row was fitted on
    seconds: float
    loss_before: float  # mean over members of the fit loss at the initial row
    loss_after: float


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, held)`` row indices: a seeded ``fraction`` of ``n`` outcomes held out for the gate (at least one
    when ``fraction > 0`` and ``n >= 2``), the rest to fit on (at least one whenever ``n >= 1``: a single outcome
    is fitted on, none held out)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError("fraction must be in [0, 1)")
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = max(k, 1)
    k = min(k, max(n - 1, 0))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def onboard(
    router: AttentionRouter,
    model: str,
    outcomes: Outcomes,
    *,
    min_outcomes: int = 1,
    steps: int = 150,
    lr: float = 0.05,
    retain_weight: float = 0.1,
) -> OnboardingResult:
    """A copy of ``router`` whose pool ends with ``model``, its embedding row fitted on ``outcomes``.

    Args:
        router: a fitted :class:`~router.routers.attention.AttentionRouter`; it is not changed.
        model: the new model's name (not already in the pool).
        outcomes: the new model's scored outcomes to fit on (hold some out first with :func:`holdout_split`).
        min_outcomes: fewer scored outcomes raise :class:`NotEnoughOutcomes`.
        steps, lr: full-batch Adam steps on the new row, and their learning rate.
        retain_weight: weight of the mean squared change of the prompts' context ``g`` (the new key enters
            every prompt's attention; the existing models see a prompt only through ``g``).

    Only the new row of each member's ``model_emb`` is trained; every other tensor of the copy equals the
    original's bitwise. Losses are the router's own (masked BCE on quality, Huber on standardised log cost).
    """
    import torch  # noqa: PLC0415

    from router.routers.attention import AttentionRouter, _deterministic  # noqa: PLC0415
    from router.routers.attention_inference import on_cores  # noqa: PLC0415

    if not isinstance(router, AttentionRouter):
        raise RouterError(f"onboarding needs an attention router, not {type(router).__name__}")
    router._check_fitted()
    if model in router.models:
        raise RouterError(f"model {model!r} is already in the router's pool")
    quality = np.asarray(outcomes.quality, dtype=np.float64)
    scored = ~np.isnan(quality)
    if int(scored.sum()) < min_outcomes:
        raise NotEnoughOutcomes(f"model {model!r} has {int(scored.sum())} scored outcomes; onboarding needs at "
                                f"least {min_outcomes} (ROUTER_ONBOARD_MIN_OUTCOMES)")
    outcomes = outcomes.take(np.flatnonzero(scored))
    start = time.perf_counter()
    cfg = router.config
    x, ell = router._features(outcomes.X, outcomes.prompt_chars, outcomes.tasks)
    cost = np.asarray(outcomes.cost, dtype=np.float64)
    c_mask = ~np.isnan(cost)
    log_cost = np.log(np.where(c_mask, np.maximum(cost, 0.0), 1.0) + cfg.cost_eps)
    target = {
        "q": torch.as_tensor(np.clip(outcomes.quality, 0.0, 1.0), dtype=torch.float32),
        "c": torch.as_tensor((log_cost - router.stats["logcost_mean"]) / router.stats["logcost_std"],
                             dtype=torch.float32),
        "cm": torch.as_tensor(c_mask, dtype=torch.float32),
    }

    def fit(net: CrossAttentionNet) -> tuple[CrossAttentionNet, float, float]:
        return _fit_row(net, x, ell, target, cfg.cost_weight, cfg.huber_delta, steps, lr, retain_weight)

    with _deterministic():
        fitted = on_cores(fit, router.members, "attention-onboard")
    extended = copy.copy(router)  # config, tasks, d_embed shared (never changed in place)
    extended.models = [*router.models, model]
    extended.stats = dict(router.stats)
    extended.history = [*router.history]
    extended.members = [net for net, _, _ in fitted]
    seconds = time.perf_counter() - start
    before = float(np.mean([b for _, b, _ in fitted]))
    after = float(np.mean([a for _, _, a in fitted]))
    log.info("onboarded %s from %d outcomes in %.1f s (loss %.4f -> %.4f)", model, outcomes.n, seconds, before, after)
    return OnboardingResult(extended, model, outcomes.n, seconds, before, after)


def _fit_row(
    net: CrossAttentionNet, x: torch.Tensor, ell: torch.Tensor, target: dict[str, torch.Tensor],
    cost_weight: float, huber_delta: float, steps: int, lr: float, retain_weight: float,
) -> tuple[CrossAttentionNet, float, float]:
    """A copy of ``net`` with one more model row, fitted; returns it and the fit loss before and after.

    Only the new row moves, so the encoded prompts are computed once, and each step evaluates the prompts'
    context over the extended pool and the new model's column alone (not the whole (n, m, H) pair tensor)."""
    import torch  # noqa: PLC0415
    from torch.nn import functional as F  # noqa: PLC0415

    extended = copy.deepcopy(net)
    extended.eval()
    extended.requires_grad_(False)
    frozen = extended.model_emb.detach().clone()

    def loss_of(logit: torch.Tensor, log_cost: torch.Tensor) -> torch.Tensor:
        """(k,) fit loss of each column of (n, k) predictions against the new model's outcomes."""
        bce = F.binary_cross_entropy_with_logits(logit, target["q"][:, None].expand_as(logit), reduction="none")
        huber = F.huber_loss(log_cost, target["c"][:, None].expand_as(log_cost), reduction="none",
                             delta=huber_delta)
        cm = target["cm"][:, None]
        return bce.mean(0) + cost_weight * (huber * cm).sum(0) / cm.sum().clamp_min(1.0)

    with torch.no_grad():
        h = extended.encoder(x)  # (n, H): frozen
        g_old = extended.in_context(h, frozen)
        # Start from the existing row that already fits the new outcomes best.
        first = int(torch.argmin(loss_of(*extended.heads(g_old, frozen, ell))))
    row = torch.nn.Parameter(frozen[first].clone())
    optimiser = torch.optim.Adam([row], lr=lr)

    def objective() -> tuple[torch.Tensor, torch.Tensor]:
        g = extended.in_context(h, torch.cat([frozen, row[None]]))
        fit = loss_of(*extended.heads(g, row[None], ell))[0]
        # The existing models see the prompts only through g: keeping g keeps their predictions.
        drift = ((g - g_old) ** 2).sum(-1).mean()
        return fit, fit + retain_weight * drift

    with torch.no_grad():
        before = float(objective()[0])
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        _, total = objective()
        total.backward()
        optimiser.step()
    with torch.no_grad():
        after = float(objective()[0])
    extended.model_emb = torch.nn.Parameter(torch.cat([frozen, row.detach()[None]]))
    extended.requires_grad_(True)
    return extended, before, after


def held_out_check(router: AttentionRouter, model: str, held: Outcomes, fitted_on: Outcomes) -> HeldOutCheck:
    """``router``'s Brier score on ``model``'s held-out outcomes, and that of a constant prediction (the mean
    quality of the outcomes it was fitted on): the figures the gate checks for an onboarded model."""
    from router.registry.gate import HeldOutCheck  # noqa: PLC0415

    truth = np.asarray(held.quality, dtype=np.float64)
    keep = ~np.isnan(truth)
    if not keep.any():
        return HeldOutCheck(model, 0, float("nan"), float("nan"))
    held = held.take(np.flatnonzero(keep))
    truth = np.clip(truth[keep], 0.0, 1.0)
    q_hat, _ = router.predict(held.X, held.prompt_chars, held.tasks)
    base = float(np.nanmean(np.clip(np.asarray(fitted_on.quality, dtype=np.float64), 0.0, 1.0)))
    brier = float(np.mean((q_hat[:, router.models.index(model)] - truth) ** 2))
    return HeldOutCheck(model, int(truth.size), brier, float(np.mean((base - truth) ** 2)))
