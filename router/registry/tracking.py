"""MLflow tracking: where MLflow points, whether its server answers, and what a training run logs.

:func:`connect` points this process's MLflow at the settings' URIs (after :func:`check_reachable`) for the
duration of every registry operation; :func:`log_training_run` records one training run (params, metrics, curves,
report, design doc) and logs the router as the registered model's package (``router.registry.packaging``);
:func:`run_params` reads a run's params back whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from router.errors import RegistryError
from router.files import sha256_file
from router.redact import mask, mask_uri
from router.registry.packaging import POLICY, log_pyfunc, router_registry_name, write_model_files
from router.representation import Representation
from router.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from router.policy import Calibration
    from router.routers.base import Router, RoutingData
    from router.settings import Settings
    from router.templates import Template

__all__ = ["CHARS_SUFFIX", "CONNECT_ATTEMPTS", "CONNECT_ATTEMPTS_ENV", "MODEL_ID_TAG", "PARAMS_ARTIFACT",
           "DOES_NOT_EXIST", "SHA256_SUFFIX", "RegistryUnavailable", "absent", "check_reachable", "connect",
           "ensure_experiment", "log_training_run", "run_params"]

log = logging.getLogger(__name__)

#: Run tag holding the id of the logged model (``models:/<id>``), read by ``promotion.register_challenger``.
MODEL_ID_TAG = "router.model_id"
#: MLflow's limit on a param value (``mlflow.utils.validation.MAX_PARAM_VAL_LENGTH``): MLflow cuts a longer value, with
#: a warning. A longer value is never logged as a param (:func:`_loggable_params`).
_MAX_PARAM_CHARS = 6000
#: Run artifact with every param :func:`log_training_run` logs, whole: the one full copy of a value too long for a
#: param (``{key: text}``).
PARAMS_ARTIFACT = "params.json"
#: A param value longer than MLflow allows is logged as these two params, ``<key>.sha256`` (of its UTF-8 text) and
#: ``<key>.chars`` (its length), and kept whole in :data:`PARAMS_ARTIFACT`; :func:`run_params` reads it back.
SHA256_SUFFIX, CHARS_SUFFIX = ".sha256", ".chars"


class RegistryUnavailable(RegistryError):
    """The MLflow tracking/registry server cannot be reached (after retrying), or it answers with an error (a refusal,
    a server error, a broken registry file) where the project asked for a model, version, alias or run."""


#: MLflow's error code for a registered model, model version or run that does not exist: the sqlite store raises it,
#: and an MLflow server answers it (HTTP 404 with this code in its JSON body). Only this code means "not there".
DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"


def absent(exc: MlflowException, uri: str, what: str, *, also: Sequence[str] = ()) -> bool:
    """``True`` when ``exc`` says that what was asked for does not exist (:data:`DOES_NOT_EXIST`, or a code in
    ``also``: the sqlite store and the server answer ``INVALID_PARAMETER_VALUE`` for an alias the model lacks).

    Any other MLflow error (PERMISSION_DENIED, UNAUTHENTICATED, a server error, a proxy's answer, a lost connection,
    a registry file that is not one) is never read as "nothing registered": raises :class:`RegistryUnavailable`
    (exit 4) naming the masked ``uri``, what was asked for (``what``: "registered model 'x'") and MLflow's message.
    """
    if exc.error_code in (DOES_NOT_EXIST, *also):
        return True
    text = str(exc)
    masked = mask(text)
    raise RegistryUnavailable(
        f"the MLflow registry at {mask_uri(uri)} answered an error when asked for {what}: {masked}. Check "
        "ROUTER_MLFLOW_TRACKING_URI and MLflow's credentials (MLFLOW_TRACKING_TOKEN or "
        "MLFLOW_TRACKING_USERNAME/PASSWORD), or the server's log"
    ) from (exc if masked == text else None)  # MLflow quoted a URL with credentials: never chain it


@contextmanager
def connect(settings: Settings) -> Iterator[MlflowClient]:
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


def ensure_experiment(settings: Settings, client: MlflowClient) -> str:
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


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _loggable_params(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """``(params to log, every value whole)`` of ``params`` (values as text: strings as they are, the rest JSON).

    A value longer than MLflow allows (:data:`_MAX_PARAM_CHARS`) is never cut: it is logged as ``<key>.sha256`` and
    ``<key>.chars`` instead (:data:`SHA256_SUFFIX`), and only the whole values (:data:`PARAMS_ARTIFACT`) hold it."""
    whole = {str(k): _param_text(v) for k, v in params.items()}
    short: dict[str, str] = {}
    for key, text in whole.items():
        if len(text) <= _MAX_PARAM_CHARS:
            short[key] = text
            continue
        pointers = {key + SHA256_SUFFIX: _sha256(text), key + CHARS_SUFFIX: str(len(text))}
        taken = sorted(set(pointers) & set(whole))
        if taken:
            raise RegistryError(f"param {key!r} is too long to log ({len(text)} characters) and {taken} are taken")
        short.update(pointers)
        log.info("param %s (%d characters) is longer than an MLflow param may be: logged as %s%s and %s%s, whole "
                 "in the run's %s", key, len(text), key, SHA256_SUFFIX, key, CHARS_SUFFIX, PARAMS_ARTIFACT)
    return short, whole


def run_params(client: MlflowClient, run: Any) -> dict[str, str]:
    """A run's params, whole: each value logged as ``<key>.sha256``/``<key>.chars`` (:func:`_loggable_params`) is
    read from the run's :data:`PARAMS_ARTIFACT` and checked against its sha256 (the two short params stay too).

    Raises:
        RegistryError: the run's ``params.json`` lacks such a value or holds another one.
    """
    params = dict(run.data.params)
    long = [key for key in (k.removesuffix(SHA256_SUFFIX) for k in params if k.endswith(SHA256_SUFFIX))
            if key + CHARS_SUFFIX in params and key not in params]
    if not long:
        return params
    run_id = run.info.run_id
    with tempfile.TemporaryDirectory(prefix="router-params-") as tmp:
        try:
            whole = json.loads(Path(client.download_artifacts(run_id, PARAMS_ARTIFACT, tmp)).read_text())
        except (MlflowException, OSError, ValueError) as exc:
            raise RegistryError(f"run {run_id} logged {long} by sha256 but its {PARAMS_ARTIFACT} cannot be read: "
                                f"{mask(str(exc))}") from None
    for key in long:
        text = whole.get(key) if isinstance(whole, dict) else None
        if not isinstance(text, str) or _sha256(text) != params[key + SHA256_SUFFIX]:
            raise RegistryError(f"run {run_id}'s {PARAMS_ARTIFACT} does not hold the {key!r} its params name "
                                f"(sha256 {params[key + SHA256_SUFFIX][:12]}…)")
        params[key] = text
    return params


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


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
    templates: Sequence[Template] = (),
) -> str:
    """Log one training run to MLflow and the fitted router as a pyfunc model; return the run id.

    Args:
        settings: where MLflow lives (``mlflow_uri``, ``mlflow_experiment``, ``mlflow_artifacts``), the encoder.
        router: the fitted router (any registered one: saved through ``Router.to_artifacts``).
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

    ``templates`` (the store's learned prompt templates, ``router.embeddings.stored_templates``) travel with the
    model as its ``templates`` artifact, with the settings' representation key in ``pool.json``, so the served
    model reads prompts as the training vectors were computed.

    ``policy`` (a :class:`router.policy.Calibration`) is logged as ``policy.*`` params and tags (the registered
    target's choice, the calibration's size ``policy.calibration_points`` and ``policy.calibration_sha256``) and
    ``policy.json`` (the whole calibration, also the pyfunc's ``policy`` artifact, which its
    ``model_config["policy"]`` references by sha256), and gives its signature's default params.

    No param is ever cut at MLflow's 6000 characters: a longer value (a long price record ``data.prices``, a long
    ``data.ingest_runs``, ...) is logged as ``<key>.sha256`` and ``<key>.chars`` and kept whole in ``params.json``,
    which holds every param whole; :func:`run_params` reads them back.

    If the router exposes a training history (``router.history``), it is logged as ``train/<key>`` metrics by
    step (epoch, or ensemble member for per-member summaries).

    The logged model (name ``model``) is models-from-code (``mlflow/router_model.py``) with artifacts
    ``weights`` (safetensors), ``config`` (the router's JSON config) and ``pool``
    (:class:`~router.registry.packaging.ModelPool`), the package ``router`` as code, explicit pip requirements, and
    a signature with the params of :data:`~router.registry.serving.DEFAULT_PARAMS`
    (:func:`~router.registry.packaging.log_pyfunc`).
    """
    metrics_dict: dict[str, Any] = dict(getattr(metrics, "metrics", metrics))
    registry_name = router_registry_name(router)
    tensors, config = router.to_artifacts()
    if list(router.models) != list(train_data.models):
        raise RegistryError(f"router models {router.models} differ from the training data's {train_data.models}")
    if report_dir is not None and not Path(report_dir).is_dir():
        raise RegistryError(f"report folder {report_dir} does not exist")

    all_params: dict[str, Any] = {
        "router": registry_name,
        "encoder": settings.encoder,
        "representation": Representation.from_settings(settings).key,
        "templates": len(templates),
        "embedding_dim": int(train_data.X.shape[1]),
        "n_models": len(router.models),
        "models": ",".join(router.models),
        **_architecture_params(config),
        **_snapshot_params(data_snapshot),
    }
    all_params.update({str(k): v for k, v in (params or {}).items()})

    with connect(settings) as client, tempfile.TemporaryDirectory(prefix="router-model-") as tmp:
        experiment_id = ensure_experiment(settings, client)
        files = write_model_files(Path(tmp), router, tensors, config, train_data, settings.encoder, registry_name,
                                  Representation.from_settings(settings).key, templates, policy)
        policy_params: dict[str, Any] = {}
        if policy is not None:  # the registered target's choice; the calibration itself is policy.json
            policy_params = {**policy.params(), "policy.calibration_sha256": sha256_file(files[POLICY])}
        logged, whole = _loggable_params({**all_params, **policy_params})
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {})) as run:
            mlflow.log_params(logged)
            mlflow.log_dict(whole, PARAMS_ARTIFACT)
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
                mlflow.set_tags(_loggable_params(policy_params)[0])
                mlflow.log_artifact(str(files[POLICY]))  # policy.json: the file the model carries
            model_info = log_pyfunc(files, router.models, policy)
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
