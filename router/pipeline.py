"""Train every router on the store's train split and evaluate them on its test split, RouterBench-style.

This is the library side of ``routerctl evaluate`` and of the nightly flow's ``train`` step. Every router is
fitted on the same embeddings and the same split, and each is evaluated on its own predictions: the
cross-attention router twice (``attention`` with the linear willingness-to-pay reward, ``attention_exp`` with
the exponential reward), baselines with the linear reward.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from router.errors import RouterError
from router.dataset import Snapshot, load_routing_data, routable_pool, snapshot
from router.embeddings import stored_templates
from router.evaluation import EvaluationResult, Prediction, evaluate, paired_aiq_se
from router.report import copy_to_latest, write_report
from router.routers import Router, RoutingData, get_router
from router.settings import Settings
from router.templates import Template

log = logging.getLogger(__name__)

ATTENTION = "attention"
BASELINES = ("knn5", "knn10", "knn40", "mlp", "mf")
#: evaluated name -> (fitted router name, reward)
EVALUATED = {
    "attention": (ATTENTION, "linear"),
    "attention_exp": (ATTENTION, "exponential"),
    **{name: (name, "linear") for name in BASELINES},
}


class NotEnoughData(RouterError, RuntimeError):
    """The store has no train or no test prompts with embeddings."""


@dataclass
class TrainRun:
    run_id: str
    routers: dict[str, Router]
    evaluation: EvaluationResult
    report_dir: Path
    train: RoutingData
    test: RoutingData
    snapshot: Snapshot
    seconds: dict[str, float] = field(default_factory=dict)
    templates: tuple[Template, ...] = ()  # the prompt templates the vectors were stripped of (router.templates)
    predictions: dict[str, Prediction] = field(default_factory=dict)  # evaluated name -> its test predictions

    @property
    def metrics(self) -> dict:
        return self.evaluation.metrics

    def aiq(self, name: str) -> float:
        return float(self.metrics["routers"][name]["aiq"])

    def best_baseline(self) -> tuple[str, float]:
        name = max(BASELINES, key=lambda n: self.metrics["routers"].get(n, {}).get("aiq", -1.0))
        return name, self.aiq(name)

    def aiq_se(self, first: str, second: str, seed: int) -> float:
        """Standard error of ``AIQ(first) − AIQ(second)`` (evaluated names) on the test rows
        (:func:`router.evaluation.paired_aiq_se`, seeded)."""
        return paired_aiq_se(self.predictions[first], self.predictions[second], self.test.quality, self.test.cost,
                             self.test.eval_names, seed=seed)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def load_splits(con: duckdb.DuckDBPyConnection, settings: Settings) -> tuple[RoutingData, RoutingData]:
    train = load_routing_data(con, settings.encoder, "train", models=routable_pool(con, settings.onboard_min_outcomes))
    test = load_routing_data(con, settings.encoder, "test", models=train.models)
    if train.n == 0 or test.n == 0:
        raise NotEnoughData(
            f"need embedded train and test prompts (have {train.n} train, {test.n} test): "
            "ingest RouterBench data and run `routerctl embed`"
        )
    return train, test


def predict(router: Router, data: RoutingData) -> tuple[np.ndarray, np.ndarray]:
    return router.predict(data.X, data.prompt_chars, data.eval_names)


def train_and_evaluate(con: duckdb.DuckDBPyConnection, settings: Settings, *, dataset: str = "store",
                       evaluated: dict[str, tuple[str, str]] | None = None, run_id: str | None = None,
                       write: bool = True) -> TrainRun:
    """Fit the routers, evaluate them with the RouterBench protocol, write the report (and ``latest``)."""
    evaluated = evaluated or EVALUATED
    run_id = run_id or new_run_id()
    train, test = load_splits(con, settings)
    snap = snapshot(con)
    routers: dict[str, Router] = {}
    seconds: dict[str, float] = {}
    names = list(dict.fromkeys(fitted for fitted, _ in evaluated.values()))
    for k, name in enumerate(names, 1):
        log.info("fitting router %d/%d: %s on %d train prompts", k, len(names), name, train.n)
        start = time.perf_counter()
        routers[name] = get_router(name).fit(train, seed=settings.seed)
        seconds[f"fit.{name}"] = time.perf_counter() - start
        log.info("fitted %s in %.1f s", name, seconds[f"fit.{name}"])
    predictions = {}
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for shown, (fitted, reward) in evaluated.items():
        if fitted not in cache:
            cache[fitted] = predict(routers[fitted], test)
        predictions[shown] = (*cache[fitted], reward)
    result = evaluate(predictions, test.quality, test.cost, test.eval_names, test.models,
                      dataset=dataset, n_train=train.n, n_test=test.n)
    report_dir = settings.reports / run_id
    if write:
        write_report(result, report_dir)
        copy_to_latest(report_dir, settings.reports)
    templates = stored_templates(con) if settings.embed_templates else ()
    return TrainRun(run_id, routers, result, report_dir, train, test, snap, seconds, templates, predictions)
