"""The promotion rule (``router.registry.gate.decide``) on plain numbers: no MLflow, no model, no store."""

from __future__ import annotations

import json

import pytest

from router.registry.gate import HeldOutCheck, PromotionDecision, Verdict, decide, recorded_decision

SANE = {"loads": True, "pool_matches": True, "finite": True}


def rule(challenger: float | None, champion: float | None = None, baseline: float | None = None,
         tolerance: float = 0.0, *, champion_version: int | None = None, challenger_version: int = 5,
         checks: dict[str, bool] = SANE, problem: str = "", champion_note: str = "") -> Verdict:
    if champion is not None and champion_version is None:
        champion_version = 4
    return decide(challenger, champion, baseline, tolerance, challenger_version=challenger_version,
                  champion_version=champion_version, checks=checks, problem=problem, champion_note=champion_note)


def test_no_champion_and_no_baseline_promotes() -> None:
    assert rule(0.1) == Verdict(True, "no champion and no baseline given")


@pytest.mark.parametrize(("challenger", "baseline", "promoted", "relation"), [
    (0.61, 0.60, True, ">"),
    (0.60, 0.60, False, "<="),  # a first version must beat the best baseline, not tie it
    (0.40, 0.60, False, "<="),
])
def test_first_version_must_beat_the_best_baseline(challenger: float, baseline: float, promoted: bool,
                                                    relation: str) -> None:
    verdict = rule(challenger, baseline=baseline, tolerance=0.5)  # the tolerance is for champions only
    assert verdict.promoted is promoted
    assert verdict.reason == (f"no champion; challenger AIQ {challenger:.6f} {relation} best baseline AIQ "
                              f"{baseline:.6f}")


@pytest.mark.parametrize(("challenger", "baseline", "se", "promoted"), [
    (0.59, 0.60, 0.01, True),   # behind by less than 1.645 standard errors of the difference: noise
    (0.58, 0.60, 0.01, False),  # behind by more (0.02 > 0.01645): the baseline is ahead
    (0.61, 0.60, 0.01, True),
    (0.59, 0.60, 0.0, False),   # no noise measured: the strict bar
    (0.58, 0.60, 0.009, False),  # behind by 0.02: beyond 1.645 errors (0.0148), within 2.326 (0.0209)
])
def test_a_first_version_is_refused_only_when_the_baseline_is_ahead_beyond_the_noise(
        challenger: float, baseline: float, se: float, promoted: bool) -> None:
    verdict = decide(challenger, None, baseline, 0.0, challenger_version=1, champion_version=None, checks=SANE,
                     baseline_se=se)
    assert verdict.promoted is promoted
    relation = ">" if promoted else "<="
    expected = f"no champion; challenger AIQ {challenger:.6f} {relation} best baseline AIQ {baseline:.6f}"
    assert verdict.reason == expected + (f" - 1.645 standard errors of the difference ({se:.6f})" if se else "")
    # the best of five baselines picked on the same rows: each comparison at 5 % / 5 (Bonferroni), so 2.326 errors
    best_of_five = decide(challenger, None, baseline, 0.0, challenger_version=1, champion_version=None, checks=SANE,
                          baseline_se=se, baselines=5)
    assert best_of_five.promoted is (challenger > baseline - 2.326 * se)
    if se:
        assert best_of_five.reason.endswith(f"best of 5 baselines' AIQ {baseline:.6f} - 2.326 standard errors of "
                                            f"the difference ({se:.6f})")
    # against a champion the baseline's noise plays no part
    assert not decide(0.5, 0.6, baseline, 0.0, challenger_version=2, champion_version=1, checks=SANE,
                      baseline_se=1.0).promoted


@pytest.mark.parametrize(("challenger", "champion", "tolerance", "promoted"), [
    (0.70, 0.60, 0.0, True),  # better
    (0.60, 0.60, 0.0, True),  # as good: >=
    (0.59, 0.60, 0.0, False),  # worse, no tolerance
    (0.58, 0.60, 0.05, True),  # worse within the tolerance
    (0.50, 0.60, 0.05, False),  # worse outside it
])
def test_against_a_champion_within_the_tolerance(challenger: float, champion: float, tolerance: float,
                                                 promoted: bool) -> None:
    verdict = rule(challenger, champion, baseline=0.99, tolerance=tolerance)  # the baseline no longer counts
    assert verdict.promoted is promoted
    relation = ">=" if promoted else "<"
    assert verdict.reason == (f"challenger AIQ {challenger:.6f} {relation} champion v4 AIQ {champion:.6f} "
                              f"- tolerance {tolerance:g}")


def test_a_failed_sanity_check_rejects_whatever_the_numbers() -> None:
    checks = {**SANE, "finite": False}
    verdict = rule(None, 0.1, checks=checks, problem="non-finite predictions on the test data")
    assert verdict == Verdict(False, "sanity check failed: non-finite predictions on the test data")
    assert not rule(0.9, checks={**SANE, "loads": False}, problem="cannot load: x").promoted


def test_the_champion_itself_stays_champion() -> None:
    assert rule(0.2, 0.9, champion_version=5, challenger_version=5) == Verdict(True, "already champion")


def test_an_absent_champion_is_noted_in_the_reason() -> None:
    note = "champion v4 cannot be evaluated on this data (pool); treated as absent"
    verdict = rule(0.5, baseline=0.4, champion_version=4, champion_note=note)
    assert verdict.promoted
    assert verdict.reason == f"no champion; challenger AIQ 0.500000 > best baseline AIQ 0.400000 ({note})"


def test_a_sane_challenger_without_its_aiq_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs its AIQ"):
        rule(None, 0.5)


def test_the_decision_record_round_trips_through_its_tags() -> None:
    decision = PromotionDecision(
        promoted=False, challenger_version=7, champion_version=3, challenger_aiq=0.5, champion_aiq=0.6,
        baseline_aiq=None, tolerance=0.0, checks=dict(SANE), reason="x" * 5000, decided_at="2026-01-01T00:00:00",
        baseline_se=0.004,
    )
    tags = decision.tags()
    assert tags["gate.decision"] == "rejected" and tags["gate.baseline_aiq"] == ""
    assert tags["gate.baseline_se"] == "0.004" and json.loads(tags["gate.v7"])["baseline_se"] == 0.004
    assert json.loads(tags["gate.checks"]) == SANE
    assert len(tags["gate.reason"]) == 4000 and json.loads(tags["gate.v7"])["reason"] == "x" * 1000
    assert recorded_decision(tags, 7) == "rejected"
    assert recorded_decision(tags, 3) is None and recorded_decision({"gate.v3": "not json"}, 3) is None


def _held(brier: float, constant: float = 0.25, n: int = 40) -> HeldOutCheck:
    return HeldOutCheck("new-model", n, brier, constant)


@pytest.mark.parametrize(("challenger", "champion", "brier", "promoted"), [
    (0.61, 0.60, 0.20, True),  # better on the common rows, and the new model beats its base rate
    (0.61, 0.60, 0.25, True),  # ties the base rate: <=
    (0.61, 0.60, 0.26, False),  # better AIQ, but the new model's predictions are worse than a constant
    (0.59, 0.60, 0.10, False),  # the new model is well learned, but the common rows got worse
])
def test_an_onboarded_challenger_is_gated_on_common_rows_and_the_new_models_held_out_outcomes(
        challenger: float, champion: float, brier: float, promoted: bool) -> None:
    verdict = decide(challenger, champion, None, 0.0, challenger_version=5, champion_version=4, checks=SANE,
                     held_out=_held(brier))
    assert verdict.promoted is promoted
    relation = "<=" if brier <= 0.25 else ">"
    line = f"onboarded new-model: held-out Brier {brier:.6f} {relation} constant's 0.250000 on 40 outcomes"
    if brier > 0.25:
        assert verdict.reason == line
    else:
        aiq = ">=" if promoted else "<"
        assert verdict.reason == (f"challenger AIQ {challenger:.6f} {aiq} champion v4 AIQ {champion:.6f} - "
                                  f"tolerance 0; {line}")


def test_an_onboarded_model_without_held_out_outcomes_is_rejected() -> None:
    verdict = decide(0.7, 0.6, None, 0.0, challenger_version=5, champion_version=4, checks=SANE,
                     held_out=_held(0.0, 0.0, n=0))
    assert verdict == Verdict(False, "onboarded new-model: no held-out outcome to check it on")
    failed = decide(None, 0.6, None, 0.0, challenger_version=5, champion_version=4,
                    checks={**SANE, "finite": False}, problem="non-finite", held_out=_held(0.1))
    assert failed == Verdict(False, "sanity check failed: non-finite")  # sanity checks come first
