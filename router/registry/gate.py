"""The promotion rule, pure: figures in, decision out (no MLflow, no downloads, no tag writes).

``router.registry.promotion.gate`` gathers the figures (the challenger's sanity checks, both AIQs on the same
held-out rows) and records what :func:`decide` returns as a :class:`PromotionDecision` (``gate.*`` tags).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from router.evaluation import noise_z

__all__ = ["TAG_PREFIX", "HeldOutCheck", "PromotionDecision", "Verdict", "decide", "recorded_decision"]

_MAX_TAG_CHARS = 4000
#: Prefix of the model-version tags a gate writes (:meth:`PromotionDecision.tags`).
TAG_PREFIX = "gate."


@dataclass(frozen=True)
class Verdict:
    """What :func:`decide` rules: promote or not, and why (one line, with the figures it compared)."""

    promoted: bool
    reason: str


@dataclass(frozen=True)
class HeldOutCheck:
    """An onboarded model's own held-out outcomes (``router.onboarding``), scored: the challenger's Brier score on
    them, and the Brier score of a constant prediction, the mean quality of the outcomes it was fitted on."""

    model: str
    n: int
    brier: float
    constant_brier: float

    @property
    def passed(self) -> bool:
        """The learned row predicts the held-out outcomes at least as well as their base rate."""
        return self.n > 0 and self.brier <= self.constant_brier

    def line(self) -> str:
        if self.n <= 0:
            return f"onboarded {self.model}: no held-out outcome to check it on"
        relation = "<=" if self.passed else ">"
        return (f"onboarded {self.model}: held-out Brier {self.brier:.6f} {relation} constant's "
                f"{self.constant_brier:.6f} on {self.n} outcomes")


def decide(
    challenger_aiq: float | None,
    champion_aiq: float | None,
    baseline_aiq: float | None,
    tolerance: float,
    *,
    challenger_version: int,
    champion_version: int | None,
    checks: Mapping[str, bool],
    problem: str = "",
    champion_note: str = "",
    held_out: HeldOutCheck | None = None,
    baseline_se: float | None = None,
    baselines: int = 1,
) -> Verdict:
    """The promotion rule.

    Args:
        challenger_aiq: the challenger's AIQ on the held-out rows (``None`` only when a sanity check failed).
        champion_aiq: the current champion's AIQ on the same rows; ``None``: no champion, or one that cannot be
            evaluated on them (treated as absent; ``champion_note`` says why).
        baseline_aiq: the best baseline router's AIQ, the bar for a first version; ``None``: no bar.
        baseline_se: the standard error of the challenger's AIQ minus that baseline's on the same rows
            (:func:`router.evaluation.paired_aiq_se`); ``None`` or 0: the bar is strict.
        baselines: how many baseline routers ``baseline_aiq`` is the best of (picked on the same rows).
        tolerance: how much AIQ the challenger may lose against the champion and still win.
        challenger_version, champion_version: the versions (equal: the challenger already is the champion).
        checks: the challenger's sanity checks (all must hold); ``problem`` names the one that failed.
        champion_note: why the champion counts as absent, appended to the reason.
        held_out: for a challenger that onboarded a model its champion lacks, that model's held-out outcomes
            scored (the AIQs are then those of the rows and models both versions can be scored on).

    Rejected when a sanity check failed, or when ``held_out`` is given and its check fails (the new model's
    predictions must beat the constant on its own held-out outcomes: no held-out outcome fails too); promoted when the challenger already is the champion; against a
    champion, promoted iff ``challenger_aiq >= champion_aiq - tolerance``; with none, promoted iff there is no
    baseline or ``challenger_aiq > baseline_aiq - noise_z(baselines) * baseline_se``: a first version is refused
    only when the test rows show the baseline ahead at the one-sided 5% level over the ``baselines`` comparisons
    the best one was picked from (``router.evaluation.noise_z``, Bonferroni; 1.645 for one, the calibration's
    convention), not when the best of several baselines is ahead by less than the rows can tell.
    """
    if not all(checks.values()):
        promoted, reason = False, f"sanity check failed: {problem}"
    elif held_out is not None and not held_out.passed:
        promoted, reason = False, held_out.line()
    elif champion_version == challenger_version:
        promoted, reason = True, "already champion"
    elif champion_aiq is not None:
        challenger = _required(challenger_aiq)
        promoted = challenger >= champion_aiq - tolerance
        relation = ">=" if promoted else "<"
        reason = (
            f"challenger AIQ {challenger:.6f} {relation} champion v{champion_version} AIQ {champion_aiq:.6f}"
            f" - tolerance {tolerance:g}"
        )
    elif baseline_aiq is None:
        promoted, reason = True, "no champion and no baseline given"
    else:
        challenger = _required(challenger_aiq)
        z = noise_z(baselines)
        allowance = z * baseline_se if baseline_se else 0.0
        promoted = challenger > baseline_aiq - allowance
        relation = ">" if promoted else "<="
        best = "best baseline" if baselines == 1 else f"best of {baselines} baselines'"
        reason = f"no champion; challenger AIQ {challenger:.6f} {relation} {best} AIQ {baseline_aiq:.6f}"
        if allowance:
            reason += f" - {z:g} standard errors of the difference ({baseline_se:.6f})"
    if held_out is not None and held_out.passed and all(checks.values()):
        reason = f"{reason}; {held_out.line()}"
    if champion_note:
        reason = f"{reason} ({champion_note})"
    return Verdict(promoted, reason)


def _required(challenger_aiq: float | None) -> float:
    if challenger_aiq is None:
        raise ValueError("a challenger that passed its sanity checks needs its AIQ")
    return challenger_aiq


@dataclass(frozen=True)
class PromotionDecision:
    """The record of a gate (``router.registry.promotion.gate``): the figures it compared and :func:`decide`'s
    verdict. Its fields are also written as ``gate.*`` tags on both versions (:meth:`tags`)."""

    promoted: bool
    challenger_version: int
    champion_version: int | None  # the champion the challenger faced (None: first version, or no champion)
    challenger_aiq: float | None
    champion_aiq: float | None
    baseline_aiq: float | None
    tolerance: float
    checks: dict[str, bool]
    reason: str
    reward: str = "linear"
    baseline_se: float | None = None  # standard error of challenger minus baseline AIQ (first versions)
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def decision(self) -> str:
        return "promoted" if self.promoted else "rejected"

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "challenger_aiq": self.challenger_aiq,
            "champion_aiq": self.champion_aiq,
            "baseline_aiq": self.baseline_aiq,
            "baseline_se": self.baseline_se,
            "tolerance": self.tolerance,
            "checks": self.checks,
            "reason": self.reason,
            "reward": self.reward,
            "decided_at": self.decided_at,
        }

    def tags(self) -> dict[str, str]:
        """``gate.*`` tags: flat keys for this gate, plus ``gate.v<challenger>`` holding the whole record."""
        flat = {k: v for k, v in self.as_dict().items() if k != "checks"}
        tags = {f"{TAG_PREFIX}{k}": "" if v is None else str(v) for k, v in flat.items()}
        tags[f"{TAG_PREFIX}checks"] = json.dumps(self.checks, sort_keys=True)
        record = {**self.as_dict(), "reason": self.reason[:1000]}
        tags[f"{TAG_PREFIX}v{self.challenger_version}"] = json.dumps(record, sort_keys=True)
        return {k: v[:_MAX_TAG_CHARS] for k, v in tags.items()}


def recorded_decision(tags: Mapping[str, str], version: int) -> str | None:
    """The decision of the gate this version went through as challenger (tag ``gate.v<version>``)."""
    try:
        return str(json.loads(tags[f"{TAG_PREFIX}v{version}"])["decision"])
    except (KeyError, ValueError, TypeError):
        return None
