"""Per-model MLP router (RouterBench's MLP baseline), registered as ``mlp``.

One small MLP classifier per model maps the prompt embedding to P(response is correct), trained on the
rows where that model was observed. Cost is the model's mean observed training cost, as in RouterBench
(it does not depend on the prompt).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from router.routers import register
from router.routers.base import Router, RoutingData, to_tensor
from router.routers.knn import _nan_column_mean

if TYPE_CHECKING:
    import torch
    from sklearn.neural_network import MLPClassifier

__all__ = ["MLPRouter"]


@register("mlp")
class MLPRouter(Router):
    """One ``sklearn`` MLP classifier per model on the embedding; cost = mean training cost per model.

    Scores in (0, 1) are binarised at 0.5 for the classifier; the predicted quality is the positive-class
    probability. A model with fewer than ``min_rows`` observations, or only one observed label, predicts
    its mean observed score.

    Args:
        hidden: hidden layer sizes.
        alpha: L2 penalty.
        max_iter: Adam epochs.
        early_stopping: hold out 10% of each model's rows and stop when its accuracy stalls.
        min_rows: fewest observations needed to fit a model's MLP.
    """

    name: ClassVar[str] = "mlp"

    def __init__(
        self,
        hidden: tuple[int, ...] = (100,),
        alpha: float = 1e-4,
        max_iter: int = 200,
        early_stopping: bool = True,
        min_rows: int = 20,
    ) -> None:
        self.hidden = tuple(hidden)
        self.alpha = alpha
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.min_rows = min_rows

    def fit(self, data: RoutingData, seed: int = 42) -> MLPRouter:
        from sklearn.exceptions import ConvergenceWarning  # noqa: PLC0415 - scikit-learn only where an MLP is fitted

        self.models = list(data.models)
        quality = np.asarray(data.quality, dtype=np.float64)
        self._quality_mean = _nan_column_mean(quality, default=0.5)
        self._cost_mean = _nan_column_mean(np.asarray(data.cost, dtype=np.float64), default=0.0)
        self._classifiers: list[MLPClassifier | None] = []
        for j in range(len(self.models)):
            rows = ~np.isnan(quality[:, j])
            labels = (quality[rows, j] >= 0.5).astype(np.int64)
            if rows.sum() < self.min_rows or np.unique(labels).size < 2:
                self._classifiers.append(None)
                continue
            clf = self._classifier().set_params(random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(data.X[rows], labels)
            self._classifiers.append(clf)
        return self

    def predict(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None = None  # noqa: ARG002
                ) -> tuple[np.ndarray, np.ndarray]:
        n = X.shape[0]
        quality = np.empty((n, len(self.models)), dtype=np.float64)
        for j, clf in enumerate(self._classifiers):
            quality[:, j] = self._quality_mean[j] if clf is None else clf.predict_proba(X)[:, 1]
        cost = np.broadcast_to(self._cost_mean, quality.shape).copy()
        return quality, cost

    def _classifier(self) -> MLPClassifier:
        from sklearn.neural_network import MLPClassifier  # noqa: PLC0415 - see fit

        return MLPClassifier(hidden_layer_sizes=self.hidden, alpha=self.alpha, max_iter=self.max_iter,
                             early_stopping=self.early_stopping)

    def to_artifacts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Per fitted classifier ``j``, its layers' weights ``clf.<j>.coef.<i>`` / ``clf.<j>.intercept.<i>``; the
        per-model means; the config lists which models have a classifier (the others predict their mean) and
        what ``predict_proba`` needs besides the weights."""
        if not hasattr(self, "_classifiers"):
            raise RuntimeError("MLPRouter is not fitted")
        tensors = {"quality_mean": to_tensor(self._quality_mean), "cost_mean": to_tensor(self._cost_mean)}
        classifiers: list[dict[str, Any] | None] = []
        for j, clf in enumerate(self._classifiers):
            if clf is None:
                classifiers.append(None)
                continue
            for i, (coef, intercept) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
                tensors[f"clf.{j}.coef.{i}"] = to_tensor(coef)
                tensors[f"clf.{j}.intercept.{i}"] = to_tensor(intercept)
            classifiers.append({
                "layers": len(clf.coefs_), "activation": clf.activation, "out_activation": clf.out_activation_,
                "n_outputs": int(clf.n_outputs_), "n_features_in": int(clf.n_features_in_),
                "classes": [int(c) for c in clf.classes_],
            })
        hyperparameters = {"hidden": list(self.hidden), "alpha": self.alpha, "max_iter": self.max_iter,
                           "early_stopping": self.early_stopping, "min_rows": self.min_rows}
        return tensors, self.artifact_config(hyperparameters, classifiers=classifiers)

    @classmethod
    def from_artifacts(cls, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> MLPRouter:
        router = cls.from_artifact_config(config)  # ``hidden`` back to a tuple by ``__init__``
        router._quality_mean = tensors["quality_mean"].numpy()
        router._cost_mean = tensors["cost_mean"].numpy()
        router._classifiers = []
        for j, saved in enumerate(config["classifiers"]):
            if saved is None:
                router._classifiers.append(None)
                continue
            clf = router._classifier().set_params(activation=saved["activation"])
            clf.coefs_ = [tensors[f"clf.{j}.coef.{i}"].numpy() for i in range(saved["layers"])]
            clf.intercepts_ = [tensors[f"clf.{j}.intercept.{i}"].numpy() for i in range(saved["layers"])]
            clf.n_layers_ = saved["layers"] + 1
            clf.n_outputs_ = saved["n_outputs"]
            clf.out_activation_ = saved["out_activation"]
            clf.n_features_in_ = saved["n_features_in"]
            clf.classes_ = np.asarray(saved["classes"], dtype=np.int64)
            router._classifiers.append(clf)
        return router
