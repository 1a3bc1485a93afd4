"""The registered model's versions and aliases: register, gate, promote, roll back, list, load.

:func:`register_challenger` turns a logged model into a new version aliased ``challenger``; :func:`gate`
evaluates the challenger and the ``champion`` on the same held-out data and hands the figures to the pure rule
(``router.registry.gate.decide``), then records the decision as tags and moves ``champion`` if it says so;
:func:`promote`, :func:`rollback` and :func:`list_versions` back ``routerctl models``.

Promotion only ever moves aliases; a model version is never copied. Previous champions are kept, newest
last, as a JSON list in the registered model's ``champion_history`` tag, which :func:`rollback` pops.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from router.errors import RegistryError
from router.redact import mask, mask_uri
from router.registry.gate import HeldOutCheck, PromotionDecision, decide, recorded_decision
from router.registry.packaging import (
    CONFIG, MODEL_NAME, POLICY, POOL, WEIGHTS, ModelPool, ModelPoolError, load_router_artifacts, read_policy,
)
from router.registry.serving import predict
from router.registry.tracking import (
    MODEL_ID_TAG, RegistryUnavailable, absent, connect, run_params as full_run_params,
)

if TYPE_CHECKING:
    from router.routers.base import Router, RoutingData
    from router.settings import Settings

__all__ = ["CHALLENGER", "CHAMPION", "HISTORY_TAG", "LoadedVersion", "PoolMismatchError", "VersionInfo",
           "alias_version", "champion_history", "champion_version", "download_version", "evaluate_version", "gate",
           "list_versions", "load_version", "promote", "register_challenger", "rollback", "versions_cached"]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Registered-model tag holding the previous champions (JSON list of versions, newest last).
HISTORY_TAG = "champion_history"
HISTORY_LIMIT = 100


class PoolMismatchError(RegistryError):
    """A model version routes to a different set of models than the store holds."""


@dataclass(frozen=True)
class LoadedVersion:
    """A registered version's router rebuilt from its artifacts (no encoder, no MLflow pyfunc wrapper)."""

    version: int
    router: Router
    pool: ModelPool
    policy: dict[str, Any] | None = None  # the quality-target calibration (router.policy), if the version has one
    data_cut: str | None = None  # its training data's cut, ``data.cut`` (router.prices); None: undated or unknown
    training_prices: str | None = None  # ``data.prices``: JSON of each model's price at the cut (router.prices)


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


def _registry_uri(client: MlflowClient) -> str:
    """The registry URI ``client`` talks to (for messages; masked where shown)."""
    return str(getattr(client, "_registry_uri", None) or client.tracking_uri)


def _absent(client: MlflowClient, exc: MlflowException, what: str, *, also: Sequence[str] = ()) -> bool:
    """``True`` when ``exc`` says ``what`` does not exist; any other registry error raises
    :class:`~router.registry.tracking.RegistryUnavailable` (:func:`~router.registry.tracking.absent`)."""
    return absent(exc, _registry_uri(client), what, also=also)


def _registered_model(client: MlflowClient, name: str) -> Any | None:
    """The registered model ``name``, or ``None`` when the registry holds none by that name (an error of the
    registry itself raises :class:`RegistryUnavailable`: it is never read as "not registered")."""
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        _absent(client, exc, f"registered model {name!r}")
        return None


def _require_model(client: MlflowClient, name: str) -> Any:
    model = _registered_model(client, name)
    if model is None:
        raise RegistryError(f"no registered model {name!r} at {mask_uri(_registry_uri(client))}; train one first")
    return model


def _find_version(client: MlflowClient, name: str, version: int) -> Any | None:
    """Version ``version`` of ``name``, or ``None`` when there is no such version (or model)."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        _absent(client, exc, f"version {version} of {name!r}")
        return None


def _get_version(client: MlflowClient, name: str, version: int) -> Any:
    found = _find_version(client, name, version)
    if found is None:
        raise RegistryError(f"{name!r} has no version {version} at {mask_uri(_registry_uri(client))}")
    return found


def register_challenger(settings: Settings, run_id: str, *, description: str | None = None) -> int:
    """Register the model logged by training run ``run_id`` as a new version; alias it ``challenger``.

    The version is tagged with the run's router, encoder, model count and test AIQ (``aiq``) so that
    :func:`list_versions` can show them without downloading anything. Returns the version number.
    """
    name = settings.registered_model
    with connect(settings) as client:
        run = client.get_run(run_id)
        model_id = run.data.tags.get(MODEL_ID_TAG)
        source = f"models:/{model_id}" if model_id else f"runs:/{run_id}/{MODEL_NAME}"
        if _registered_model(client, name) is None:
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
    """The version the ``champion`` alias points at, or ``None`` (also when the local registry file does not exist
    yet: opening it would create an empty one)."""
    if settings.missing_registry():
        return None
    with connect(settings) as client:
        return alias_version(client, settings.registered_model, CHAMPION)


def alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version ``alias`` points at; ``None`` when there is no such model or alias. Any other registry error
    (server error, refusal, lost connection) is not "no champion": it raises :class:`RegistryUnavailable`, so that
    nothing is ever routed or gated on a guess."""
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        _absent(client, exc, f"alias {alias!r} of {name!r}", also=("INVALID_PARAMETER_VALUE",))  # no such alias
        return None


def champion_history(settings: Settings) -> list[int]:
    """Previous champions, oldest first (the registered model's ``champion_history`` tag)."""
    with connect(settings) as client:
        return _history(client, settings.registered_model)


def _history(client: MlflowClient, name: str) -> list[int]:
    model = _registered_model(client, name)
    raw = None if model is None else model.tags.get(HISTORY_TAG)
    if not raw:
        return []
    try:
        return [int(v) for v in json.loads(raw)]
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"tag {HISTORY_TAG!r} of {name!r} is not a JSON list of versions: {raw!r}") from exc


def download_version(settings: Settings, version: int, dst_path: Path) -> Path:
    """Download a version's model folder (``MLmodel``, ``artifacts/``, ``code/``) into ``dst_path``."""
    name = settings.registered_model
    with connect(settings) as client:
        _get_version(client, name, version)
        dst_path.mkdir(parents=True, exist_ok=True)
        return Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(dst_path)))


#: Versions loaded inside :func:`versions_cached`, by (registry URI, registered model, version); ``None`` outside.
_CACHED: dict[tuple[str, str, int], LoadedVersion] | None = None
_CACHE_LOCK = threading.Lock()


@contextmanager
def versions_cached() -> Iterator[None]:
    """Inside the block :func:`load_version` loads each version once and hands the same object out again (a
    registered version's files never change; no caller changes a loaded router): one night's steps load the
    champion once. Nested blocks share the outermost one's versions."""
    global _CACHED
    with _CACHE_LOCK:
        outermost = _CACHED is None
        if outermost:
            _CACHED = {}
    try:
        yield
    finally:
        if outermost:
            with _CACHE_LOCK:
                _CACHED = None


def load_version(settings: Settings, version: int) -> LoadedVersion:
    """Download a version's artifacts and rebuild its router (checked by
    :func:`~router.registry.packaging.load_router_artifacts`); inside :func:`versions_cached`, once per version."""
    key = (settings.mlflow_registry, settings.registered_model, int(version))
    cache = _CACHED
    if cache is not None and key in cache:
        return cache[key]
    loaded = _load_version(settings, version)
    if cache is not None:
        cache[key] = loaded
    return loaded


def _load_version(settings: Settings, version: int) -> LoadedVersion:
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
        # router.policy.Calibration.as_dict(): the policy.json artifact the model_config references by sha256
        # (versions logged before it: the calibration in the model_config itself)
        policy = read_policy((flavor.get("config") or {}).get("policy"),
                             local / artifacts[POLICY]["path"] if POLICY in artifacts else None)
    params = run_params(settings, version)
    return LoadedVersion(version=int(version), router=router, pool=pool, policy=policy,
                         data_cut=params.get("data.cut") or None, training_prices=params.get("data.prices"))


def run_params(settings: Settings, version: int) -> dict[str, str]:
    """The params of the training run behind a version, whole ({} when it has no run, e.g. registered by hand): a
    value too long for an MLflow param is read from the run's ``params.json`` (:func:`tracking.run_params`)."""
    with connect(settings) as client:
        run_id = _get_version(client, settings.registered_model, version).run_id
        if not run_id:
            return {}
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:  # the run was deleted: no params; the tracking server failing raises
            absent(exc, settings.mlflow_uri, f"run {run_id}")
            return {}
        return full_run_params(client, run)


def _predict_on(loaded: LoadedVersion, data: RoutingData) -> tuple[np.ndarray, np.ndarray]:
    """``(q_hat, c_hat)`` on ``data`` with columns in ``data.models`` order (the pool must cover them)."""
    missing = [m for m in data.models if m not in loaded.pool.models]
    if missing:
        raise PoolMismatchError(f"version {loaded.version} cannot score models {missing} (pool {loaded.pool.models})")
    if data.X.shape[1] != loaded.pool.embedding_dim:
        raise PoolMismatchError(
            f"version {loaded.version} expects {loaded.pool.embedding_dim}-dim embeddings, data has {data.X.shape[1]}"
        )
    q_hat, c_hat = predict(loaded.router, data.X, data.prompt_chars, data.eval_names)
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


#: What makes a version itself unusable on the gate's data (its artifacts fail their checks, its pool does not
#: fit): a challenger with one is rejected, a champion with one is treated as absent. Any other error while
#: loading or scoring either version (MLflow or the artifact store unreachable, a download cut short, a bug)
#: fails the gate instead: nothing is recorded, and the next run gates the same version again.
VERSION_FAULTS = (ModelPoolError, PoolMismatchError)


@contextmanager
def _fails_closed(challenger_version: int, what: str) -> Iterator[None]:
    try:
        yield
    except RegistryUnavailable:
        raise
    except Exception as exc:
        raise RegistryUnavailable(
            f"the gate of v{challenger_version} did not complete: loading or scoring {what} failed "
            f"({type(exc).__name__}: {mask(str(exc))}); no decision was recorded, the next run gates it again"
        ) from exc


def gate(
    settings: Settings,
    challenger_version: int,
    test_data: RoutingData,
    baseline_aiq: float | None = None,
    *,
    reward: str = "linear",
    held_out: HeldOutCheck | None = None,
    baseline_se: float | None = None,
    baselines: int = 1,
) -> PromotionDecision:
    """Decide whether ``challenger_version`` replaces the champion; promote it if so.

    Both the challenger and the current champion are evaluated now, on ``test_data``, in one
    :func:`router.evaluation.evaluate` call (same rows, same AIQ ``max_cost``). The challenger's sanity checks: its
    artifacts load and validate, its pool covers exactly ``test_data.models``, and its predictions on
    ``test_data`` are finite. A champion that can no longer be evaluated on ``test_data`` (its pool no longer
    matches the store) is treated as absent. The figures go to :func:`router.registry.gate.decide`: against a
    champion, ``challenger_aiq >= champion_aiq - settings.promotion_tolerance``; with none (first version), beat
    ``baseline_aiq`` (the best of ``baselines`` baseline routers' AIQs, given by the caller; ``None`` = no bar)
    less its noise, ``noise_z(baselines)`` standard errors ``baseline_se`` of the difference (given by the caller;
    ``None`` = none).

    A challenger that onboarded a model (``router.onboarding``) comes with ``held_out``, that model's held-out
    outcomes scored: its pool must be ``test_data.models`` plus that model, both versions are scored on
    ``test_data`` (the rows and models both can be scored on), and ``decide`` also checks ``held_out``.

    The decision and both AIQs are written as ``gate.*`` tags on both versions
    (:meth:`~router.registry.gate.PromotionDecision.tags`).
    """
    name = settings.registered_model
    tolerance = float(settings.promotion_tolerance)
    with connect(settings) as client:
        _get_version(client, name, challenger_version)
        champion = alias_version(client, name, CHAMPION)

    checks: dict[str, bool] = {"loads": False, "pool_matches": False, "finite": False}
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    problem = ""
    with _fails_closed(challenger_version, "the challenger"):
        try:
            loaded = load_version(settings, challenger_version)
            checks["loads"] = True
            expected = set(test_data.models) | ({held_out.model} if held_out is not None else set())
            extra = sorted(set(loaded.pool.models) - expected)
            missing = sorted(expected - set(loaded.pool.models))
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
        except VERSION_FAULTS as exc:  # the version's own artifacts are unusable: a rejection
            problem = f"cannot load: {exc}"
    champion_note = ""
    if all(checks.values()) and champion is not None and champion != challenger_version:
        with _fails_closed(challenger_version, f"champion v{champion}"):
            try:
                c_loaded = load_version(settings, champion)
                predictions["champion"] = _predict_on(c_loaded, test_data)
                if not all(np.isfinite(a).all() for a in predictions["champion"]):
                    del predictions["champion"]
                    champion_note = f"champion v{champion} predicts non-finite values; treated as absent"
            except VERSION_FAULTS as exc:  # its pool or artifacts no longer fit the store: it cannot compete
                champion_note = f"champion v{champion} cannot be evaluated on this data ({exc}); treated as absent"
    aiqs = _aiqs(predictions, test_data, reward) if predictions else {}
    challenger_aiq = aiqs.get("challenger")
    champion_aiq = aiqs.get("champion", challenger_aiq if champion == challenger_version else None)

    verdict = decide(
        challenger_aiq, champion_aiq, baseline_aiq, tolerance, challenger_version=challenger_version,
        champion_version=champion, checks=checks, problem=problem, champion_note=champion_note, held_out=held_out,
        baseline_se=baseline_se, baselines=baselines,
    )
    promoted, reason = verdict.promoted, verdict.reason

    decision = PromotionDecision(
        promoted=promoted,
        challenger_version=int(challenger_version),
        champion_version=champion,
        challenger_aiq=challenger_aiq,
        champion_aiq=champion_aiq,
        baseline_aiq=None if baseline_aiq is None else float(baseline_aiq),
        baseline_se=None if baseline_se is None else float(baseline_se),
        tolerance=tolerance,
        checks=checks,
        reason=reason,
        reward=reward,
    )
    with connect(settings) as client:
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
    with connect(settings) as client:
        _get_version(client, name, version)
        previous = alias_version(client, name, CHAMPION)
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
    with connect(settings) as client:
        _require_model(client, name)
        current = alias_version(client, name, CHAMPION)
        history = _history(client, name)
        while history:
            target = history.pop()
            if target == current:
                continue
            if _find_version(client, name, target) is None:
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
    with connect(settings) as client:
        model = _registered_model(client, name)
        if model is None:  # nothing registered by that name (yet); a registry that fails raises instead
            return []
        aliases: dict[int, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(int(version), []).append(alias)
        try:
            found = client.search_model_versions(f"name = '{name}'")
        except MlflowException as exc:
            _absent(client, exc, f"the versions of {name!r}")
            found = []
        infos = []
        for mv in found:
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
                    gate=recorded_decision(tags, version),
                    tags=tags,
                )
            )
        return sorted(infos, key=lambda v: v.version, reverse=True)


def _float_or_none(value: str | None) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except ValueError:
        return None
