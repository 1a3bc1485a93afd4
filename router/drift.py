"""Nightly drift checks: tonight's new prompts and logged outcomes against the champion's training data.

Four kinds of check, each a row of ``drift_checks`` (statistic, threshold, breached, a JSON detail):

* ``embedding``: a two-sample test on the prompts' vectors, tonight's new prompts (logs and backlog) against
  the champion's training prompts. The statistic is the permutation p-value of the (unbiased) squared MMD with
  an RBF kernel exp(-d²/b), b the median pooled squared distance (median heuristic); at most
  ``ROUTER_DRIFT_SAMPLE`` prompts a side, ``ROUTER_DRIFT_PERMUTATIONS`` permutations, seeded with
  ``ROUTER_SEED``. Breached when **below** ``ROUTER_DRIFT_EMBEDDING_P``.
* ``task_mix``: total variation distance between the two task (``eval_name``) distributions, over the prompts
  that carry a task. Breached when above ``ROUTER_DRIFT_TASK_TVD``.
* ``quality:<model>``: mean |predicted − realized| quality of the champion on tonight's scored logs of that
  model. Breached when above ``ROUTER_DRIFT_QUALITY_ERROR``.
* ``cost_ratio:<model>``: realized over predicted cost on the same logs (each plus :data:`COST_FLOOR_USD` per
  outcome); the statistic is ``max(r, 1/r)`` so
  one threshold covers both directions (the raw ratio is in the detail). Breached when above
  ``ROUTER_DRIFT_COST_RATIO``.

The champion's training prompts are those of its training run, or, for a champion the onboard step made, of
the version it was onboarded onto (``drift/champion_training``). With no champion (or none on its line whose
training run the store recorded), no new prompts, too few vectors, no task labels or fewer than
``ROUTER_DRIFT_MIN_OUTCOMES`` logged outcomes for a model, the check is recorded as skipped: NULL statistic, not
breached, the reason in its detail. The statistics are pure functions of arrays (:func:`mmd_test`,
:func:`total_variation`, :func:`calibration`); :func:`prompt_checks`, :func:`logged_outcomes` and :func:`record`
do the store's I/O.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import numpy as np

from router.embeddings import stack
from router.settings import Settings
from router.storage import execute, relation, transaction

log = logging.getLogger(__name__)

#: The store's schema version that holds ``drift_checks`` (``sql/migrations/008_drift_checks.sql``).
SCHEMA_VERSION = 8
#: Fewest vectors a side the embedding test runs on.
MIN_VECTORS = 10


@dataclass
class DriftCheck:
    name: str
    statistic: float | None  # None when skipped
    threshold: float
    breached: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The check as ``routerctl drift --json`` prints it."""
        return {"name": self.name, "statistic": self.statistic, "threshold": self.threshold,
                "breached": self.breached, "detail": self.detail}


@dataclass
class DriftResult:
    night: str
    flow_run_id: str
    checks: list[DriftCheck]

    @property
    def breached(self) -> bool:
        return any(c.breached for c in self.checks)

    @property
    def fired(self) -> list[str]:
        return [c.name for c in self.checks if c.breached]

    def as_dict(self) -> dict[str, Any]:
        return {"night": self.night, "breached": self.breached, "checks": [c.as_json() for c in self.checks]}


def skipped(name: str, threshold: float, reason: str) -> DriftCheck:
    return DriftCheck(name, None, threshold, False, {"skipped": reason})


# ------------------------------------------------------------------------------------------ the statistics
def _sq_dists(Z: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", Z, Z)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0)


def _mmd2(K: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased squared MMD from the pooled kernel matrix ``K`` and the index sets of the two samples."""
    n, m = len(a), len(b)
    kaa, kbb, kab = K[np.ix_(a, a)], K[np.ix_(b, b)], K[np.ix_(a, b)]
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2.0 * kab.mean())


def mmd_test(X: np.ndarray, Y: np.ndarray, permutations: int = 200, seed: int = 42) -> dict[str, float]:
    """Two-sample MMD test with an RBF kernel exp(-d²/b), b the median pooled squared distance.

    Returns ``mmd2`` (unbiased) and ``p_value`` = (1 + #permutations with MMD² ≥ the observed) / (1 + permutations).
    """
    if len(X) < 2 or len(Y) < 2:
        raise ValueError("the MMD test needs at least two vectors a side")
    Z = np.vstack([X, Y]).astype(np.float64)
    d2 = _sq_dists(Z)
    upper = d2[np.triu_indices(len(Z), k=1)]
    bandwidth = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    K = np.exp(-d2 / bandwidth)
    n = len(X)
    idx = np.arange(len(Z))
    observed = _mmd2(K, idx[:n], idx[n:])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        perm = rng.permutation(idx)
        if _mmd2(K, perm[:n], perm[n:]) >= observed:
            hits += 1
    return {"mmd2": observed, "p_value": (1 + hits) / (1 + permutations), "bandwidth": bandwidth}


def total_variation(a: Sequence[str], b: Sequence[str]) -> float:
    """Total variation distance between the label distributions of ``a`` and ``b`` (0 = same mix, 1 = disjoint)."""
    if not a or not b:
        raise ValueError("total variation needs labels on both sides")
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in set(ca) | set(cb))


#: USD per call added to both the realized and the predicted total cost of a model before their ratio is taken:
#: below any priced API's call, so it moves no real ratio, and a free model (realized 0) whose cost the champion
#: predicts at its floor (1e-7 per call) compares as ~1, not as 0 (an infinite spread, a breach every night).
COST_FLOOR_USD = 1e-6


def calibration(predicted_quality: np.ndarray, realized_quality: np.ndarray, predicted_cost: np.ndarray,
                realized_cost: np.ndarray) -> dict[str, float]:
    """Mean |predicted − realized| quality and realized/predicted total cost of one model's outcomes, each total
    with :data:`COST_FLOOR_USD` per outcome added (so the ratio is positive and finite)."""
    error = float(np.mean(np.abs(np.asarray(predicted_quality, float) - np.asarray(realized_quality, float))))
    floor = COST_FLOOR_USD * len(np.atleast_1d(realized_cost))
    spent, expected = float(np.sum(realized_cost)) + floor, float(np.sum(predicted_cost)) + floor
    return {"quality_error": error, "cost_ratio": spent / expected}


def sample_rows(n: int, k: int, seed: int) -> np.ndarray:
    """At most ``k`` of ``range(n)``, seeded, in order."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


# ------------------------------------------------------------------------------------------------ the checks
def embedding_check(new: np.ndarray, training: np.ndarray, settings: Settings) -> DriftCheck:
    threshold = settings.drift_embedding_p
    if len(new) < MIN_VECTORS or len(training) < MIN_VECTORS:
        return skipped("embedding", threshold, f"too few embedded prompts ({len(new)} new, {len(training)} "
                                               f"training; {MIN_VECTORS} needed a side)")
    X = new[sample_rows(len(new), settings.drift_sample, settings.seed)]
    Y = training[sample_rows(len(training), settings.drift_sample, settings.seed + 1)]
    result = mmd_test(X, Y, settings.drift_permutations, settings.seed)
    return DriftCheck("embedding", result["p_value"], threshold, result["p_value"] < threshold,
                      {"breach_when": "below", "mmd2": result["mmd2"], "bandwidth": result["bandwidth"],
                       "new": len(X), "training": len(Y), "permutations": settings.drift_permutations})


def task_mix_check(new: Sequence[str | None], training: Sequence[str | None], settings: Settings) -> DriftCheck:
    threshold = settings.drift_task_tvd
    a = [t for t in new if t]
    b = [t for t in training if t]
    if not a or not b:
        return skipped("task_mix", threshold, f"no task labels ({len(a)} new, {len(b)} training)")
    tvd = total_variation(a, b)
    top = Counter(a).most_common(3)
    return DriftCheck("task_mix", tvd, threshold, tvd > threshold,
                      {"breach_when": "above", "new": len(a), "training": len(b),
                       "new_top": dict(top), "unlabelled_new": len(new) - len(a)})


def outcome_checks(outcomes: dict[str, np.ndarray], predict: Callable[..., tuple[np.ndarray, np.ndarray]],
                   models: list[str], settings: Settings) -> list[DriftCheck]:
    """``quality:<model>`` and ``cost_ratio:<model>`` for each model of the champion's pool tonight's logs used.

    ``outcomes`` holds aligned arrays ``model``, ``quality``, ``cost_usd``, ``task``, ``n_chars`` and ``X``;
    ``predict(X, n_chars, tasks)`` is the champion's router (quality and cost, n × len(models))."""
    checks: list[DriftCheck] = []
    if not len(outcomes["model"]):
        return checks
    q_hat, c_hat = predict(outcomes["X"], outcomes["n_chars"], outcomes["task"])
    column = {m: j for j, m in enumerate(models)}
    for model in sorted(set(outcomes["model"].tolist())):
        if model not in column:
            log.info("logged model %s is not in the champion's pool: no calibration check", model)
            continue
        rows = np.flatnonzero(outcomes["model"] == model)
        qname, cname = f"quality:{model}", f"cost_ratio:{model}"
        if len(rows) < settings.drift_min_outcomes:
            reason = f"{len(rows)} logged outcomes ({settings.drift_min_outcomes} needed)"
            checks += [skipped(qname, settings.drift_quality_error, reason),
                       skipped(cname, settings.drift_cost_ratio, reason)]
            continue
        j = column[model]
        stats = calibration(q_hat[rows, j], outcomes["quality"][rows], c_hat[rows, j], outcomes["cost_usd"][rows])
        ratio = stats["cost_ratio"]
        spread = max(ratio, 1.0 / ratio)
        checks.append(DriftCheck(qname, stats["quality_error"], settings.drift_quality_error,
                                 stats["quality_error"] > settings.drift_quality_error,
                                 {"breach_when": "above", "outcomes": len(rows)}))
        checks.append(DriftCheck(cname, spread, settings.drift_cost_ratio, spread > settings.drift_cost_ratio,
                                 {"breach_when": "above", "ratio": ratio, "outcomes": len(rows)}))
    return checks


# ---------------------------------------------------------------------------------------------- store I/O
def _vectors(frame) -> np.ndarray:
    have = frame.filter(frame["vector"].is_not_null())
    return stack(have["vector"]) if have.height else np.zeros((0, 0), dtype=np.float32)


def prompt_checks(con: duckdb.DuckDBPyConnection, settings: Settings, since: datetime,
                  champion_version: int | str | None = None) -> tuple[list[DriftCheck], str | None]:
    """The ``embedding`` and ``task_mix`` checks, and the champion version they compared with (or None).
    ``champion_version``: the registry's champion (an alias moved in MLflow itself has no ``promotions`` row
    until routing records it, ``router.promotions``); None: the latest champion recorded in ``promotions``."""
    version_param = None if champion_version is None else str(champion_version)
    champion = execute(con, "drift/champion_training", {"version": version_param})
    if not champion:
        reason = "no champion trained in this store yet"
        return [skipped("embedding", settings.drift_embedding_p, reason),
                skipped("task_mix", settings.drift_task_tvd, reason)], None
    version, trained_at = champion[0]
    new = relation(con, "drift/new_prompts", {"encoder": settings.encoder, "since": since}).pl()
    if new.height == 0:
        reason = "no new prompts tonight"
        return [skipped("embedding", settings.drift_embedding_p, reason),
                skipped("task_mix", settings.drift_task_tvd, reason)], version
    training = relation(con, "drift/training_prompts", {"encoder": settings.encoder, "trained_at": trained_at}).pl()
    checks = [embedding_check(_vectors(new), _vectors(training), settings),
              task_mix_check(new["task"].to_list(), training["task"].to_list(), settings)]
    for check in checks:
        check.detail["champion"] = version
    return checks, version


def logged_outcomes(con: duckdb.DuckDBPyConnection, settings: Settings, since: datetime) -> dict[str, np.ndarray]:
    frame = relation(con, "drift/logged_outcomes", {"encoder": settings.encoder, "since": since}).pl()
    return {"model": frame["model"].to_numpy().astype(object), "quality": frame["quality"].to_numpy(),
            "cost_usd": frame["cost_usd"].to_numpy(), "task": frame["task"].to_numpy().astype(object),
            "n_chars": frame["n_chars"].to_numpy().astype(np.int64), "X": _vectors(frame)}


def record(con: duckdb.DuckDBPyConnection, result: DriftResult) -> None:
    """Replace the night's rows of ``drift_checks`` (one transaction)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with transaction(con):
        execute(con, "drift/delete_run", {"flow_run_id": result.flow_run_id})
        for c in result.checks:
            execute(con, "drift/insert_check", {
                "night": date.fromisoformat(result.night), "flow_run_id": result.flow_run_id, "name": c.name,
                "statistic": c.statistic, "threshold": c.threshold, "breached": c.breached,
                "detail": json.dumps(c.detail, default=str), "now": now})


def latest(con: duckdb.DuckDBPyConnection) -> DriftResult | None:
    """The latest night's checks as stored (``drift_checks_latest``), or None before the first."""
    rows = execute(con, "drift/latest")
    if not rows:
        return None
    checks = [DriftCheck(name, None if stat is None or math.isnan(stat) else float(stat), float(threshold),
                         bool(breached), json.loads(detail) if detail else {})
              for _, _, name, stat, threshold, breached, detail in rows]
    return DriftResult(str(rows[0][0]), rows[0][1], checks)


def summary(result: DriftResult) -> dict[str, Any]:
    """What the night keeps of the step (``night.results["drift"]``)."""
    return {**result.as_dict(), "flow_run_id": result.flow_run_id, "fired": result.fired}


__all__ = ["DriftCheck", "DriftResult", "calibration", "embedding_check", "latest", "logged_outcomes",
           "mmd_test", "outcome_checks", "prompt_checks", "record", "sample_rows", "skipped", "summary",
           "task_mix_check", "total_variation"]
