"""What the registry's champion routes with: the version, the policy the settings ask for, today's price factors.

Every path that routes with the champion (``routerctl route`` and the nightly's route step, the what-if
scenarios, the distributed route flow ``flows.scale``) builds its inputs here, so they agree on the policy and
on the prices:

* **policy** — an explicit parameter (``--lambda``), budget (``--budget``) or quality target
  (``--quality-target``), else the settings' ``ROUTER_ROUTE_LAMBDA`` / ``ROUTER_ROUTE_BUDGET_USD``, else the
  default: the quality target ``ROUTER_ROUTE_QUALITY_TARGET``. A quality target is resolved on the champion's
  stored calibration (``router.policy.resolve``: the parameter, or a mix of two);
* **prices** — the factors in force on the routing day against the prices of the champion's training data
  (``router.prices.for_version``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import duckdb

from router.errors import RouterError
from router.prices import PriceFactors, for_version

__all__ = ["NO_CHAMPION", "RoutePlan", "plan"]

#: What a command that routes says when the registry has no champion.
NO_CHAMPION = "no champion registered: run the nightly pipeline or `routerctl models promote VERSION`"


@dataclass(frozen=True)
class RoutePlan:
    """The champion and the policy it routes with (:func:`plan`)."""

    version: str
    loaded: Any  # router.registry.promotion.LoadedVersion
    reward: str
    reward_param: float | None  # None with a budget, or when no calibration resolves a target (quality end)
    budget: float | None
    policy: dict[str, Any]  # {"kind": "lambda" | "budget" | "quality_target" | "quality_end", ...}

    @property
    def router(self) -> Any:
        return self.loaded.router

    @property
    def quality_target(self) -> float | None:
        return self.policy.get("quality_target") if self.policy.get("kind") == "quality_target" else None

    @property
    def mix(self) -> tuple[float, float] | None:
        """The quality target's mixed policy as (dearer parameter, share), or ``None``."""
        from router.policy import mix_of

        return mix_of(self.policy) if self.budget is None else None

    @property
    def reference_model(self) -> str | None:
        return (self.loaded.policy or {}).get("reference_model")

    def price_factors(self, con: duckdb.DuckDBPyConnection, day: date | None = None) -> PriceFactors:
        """The champion's price factors on ``day`` (default: today, UTC)."""
        return for_version(con, self.router.models, self.loaded, day or datetime.now(UTC).date())

    def route_kwargs(self, factors: PriceFactors, exclude: list[str]) -> dict[str, Any]:
        """Keyword arguments of :func:`router.routing.route_backlog` for this plan (the caller adds the store,
        names and batch size)."""
        return {"model_version": self.version, "reward_name": self.reward, "reward_param": self.reward_param,
                "budget": self.budget, "reference_model": self.reference_model,
                "quality_target": self.quality_target, "exclude": exclude, "price_factors": factors,
                "mix": self.mix}


def plan(settings: Any, *, reward: str | None = None, reward_param: float | None = None,
         budget: float | None = None, quality_target: float | None = None,
         from_settings: bool = True) -> RoutePlan | None:
    """The champion's :class:`RoutePlan` (``None`` when no champion is registered).

    Arguments left out come from the settings (``ROUTER_ROUTE_REWARD``; with ``from_settings`` and none of a
    parameter, a budget and a quality target given, also ``ROUTER_ROUTE_LAMBDA`` / ``ROUTER_ROUTE_BUDGET_USD``);
    with neither a parameter nor a budget the policy is the quality target (``quality_target``, default
    ``ROUTER_ROUTE_QUALITY_TARGET``). Raises
    :class:`~router.errors.RouterError` when the champion was trained with another encoder than the store's."""
    from router.policy import resolve
    from router.registry import promotion

    reward = reward or settings.route_reward
    if reward_param is None and budget is None and quality_target is None and from_settings:
        reward_param, budget = settings.route_lambda, settings.route_budget_usd
        if budget is not None:
            reward_param = None
    version = promotion.champion_version(settings)
    if version is None:
        return None
    loaded = promotion.load_version(settings, version)
    if loaded.pool.encoder != settings.encoder:
        raise RouterError(f"champion v{version} was trained with encoder {loaded.pool.encoder!r} but the store "
                          f"embeds with {settings.encoder!r}: retrain, or set ROUTER_ENCODER")
    policy: dict[str, Any] = {"kind": "budget"} if budget is not None else {"kind": "lambda"}
    if reward_param is None and budget is None:
        target = settings.route_quality_target if quality_target is None else quality_target
        reward_param, policy = resolve(loaded.policy, reward, target)
    return RoutePlan(str(version), loaded, reward, reward_param, budget, policy)
