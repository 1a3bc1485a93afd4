"""``mlflow models serve`` on the champion answers ``/invocations`` with routing decisions.

A real server process on 127.0.0.1 (a free port), pointed at a temp sqlite store through ``MLFLOW_TRACKING_URI``,
with the venv's ``bin/`` on ``PATH`` (MLflow starts uvicorn through ``bash -c``). It is always stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from router.encoder import encode, open_encoder  # noqa: E402
from router.evaluation import evaluate  # noqa: E402
from router.registry import promotion, tracking  # noqa: E402
from router.routers.attention import AttentionRouter  # noqa: E402
from router.routers.base import RoutingData  # noqa: E402
from router.settings import BUNDLED_ENCODER, Settings  # noqa: E402

MODELS = ["cheap", "pricey"]
STARTUP_SECONDS = 120  # the server is usually up in 6-15 s; a loaded CI machine gets slack
PROMPTS = [
    "What is 2 plus 2?", "What is 10 minus 3?", "What is 6 times 7?", "What is 9 divided by 3?",
    "Prove that there are infinitely many primes.", "Explain the Riemann hypothesis.",
    "Write a compiler for a tiny language.", "Design a distributed lock service.",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A sqlite store whose registered model has a champion: a small router fitted on real embeddings."""
    root = tmp_path_factory.mktemp("serving")
    settings = Settings(
        home=root,
        mlflow_tracking_uri=f"sqlite:///{(root / 'mlflow.db').as_posix()}",
        mlflow_artifacts_dir=root / "mlartifacts",
        mlflow_experiment="serving-test",
        registered_model="serving-router",
    )
    encoder = open_encoder(BUNDLED_ENCODER, "cpu", embedding_dim=384, local_only=True)
    X = encode(encoder, PROMPTS, 64)
    chars = np.array([len(p) for p in PROMPTS], dtype=np.int64)
    hard = np.array([0.0] * 4 + [1.0] * 4)
    quality = np.column_stack([1.0 - hard, np.ones_like(hard)]).astype(np.float32)  # cheap fails hard prompts
    cost = np.column_stack([chars * 1e-6, chars * 1e-4]).astype(np.float32)
    labels = np.array(["arithmetic"] * 4 + ["hard"] * 4, dtype=object)
    data = RoutingData(X, quality, cost, chars, list(MODELS), labels)
    router = AttentionRouter(
        hidden=16, model_dim=4, attn_dim=4, batch_size=8, max_epochs=20, val_fraction=0.0, n_members=1, use_task=False
    )
    router.fit(data, seed=0)
    q_hat, c_hat = router.predict(data.X, data.prompt_chars)
    result = evaluate({"attention": (q_hat, c_hat, "linear")}, quality, cost, labels, MODELS)
    run_id = tracking.log_training_run(settings, router, result, None, {"rows": data.n}, train_data=data)
    version = promotion.register_challenger(settings, run_id)
    assert promotion.gate(settings, version, data).promoted
    return settings


@pytest.fixture(scope="module")
def server(champion_store: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``mlflow models serve -m models:/<name>@champion --env-manager local``; stopped afterwards."""
    settings = champion_store
    workdir = tmp_path_factory.mktemp("serve-cwd")
    log_file = workdir.parent / f"{workdir.name}.log"
    port = _free_port()
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ROUTER_")) and k != "PYTHONPATH"}
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        MLFLOW_TRACKING_URI=settings.mlflow_uri,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    command = [
        str(venv_bin / "mlflow"), "models", "serve", "-m", f"models:/{settings.registered_model}@champion",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with log_file.open("wb") as log:
        # Own process group: the server runs uvicorn as a child; stopping the group stops both.
        proc = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(proc, f"{base}/ping", log_file)
        yield base
    finally:
        _stop(proc)
    assert list(workdir.iterdir()) == [], "the server wrote to its working directory"


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log_file: Path) -> None:
    """Until ``url`` answers 200; the test fails with the server's log if it exits or is not up in time."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_file.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server not up after {STARTUP_SECONDS} s:\n{log_file.read_text()[-4000:]}")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this test created (start_new_session)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def test_invocations_route_prompts(server: str) -> None:
    frame = {"columns": ["prompt"], "data": [["What is 3 plus 5?"], ["Prove Fermat's last theorem."]]}
    status, body = _post(f"{server}/invocations", {"dataframe_split": frame, "params": {"lambda": 1e-10}})
    assert status == 200, body
    rows = body["predictions"]
    assert len(rows) == 2
    for row in rows:
        assert set(row) == {"model", "quality_hat", "cost_hat", *(f"{p}::{m}" for p in ("q", "c") for m in MODELS)}
        assert row["model"] in MODELS
        assert row["quality_hat"] == pytest.approx(row[f"q::{row['model']}"])
        assert row["cost_hat"] == pytest.approx(row[f"c::{row['model']}"])
        # A negligible willingness to pay picks the cheapest predicted model.
        assert row["model"] == min(MODELS, key=lambda m: row[f"c::{m}"])

    status, body = _post(f"{server}/invocations", {"dataframe_split": frame, "params": {"lambda": 1e9}})
    assert status == 200, body
    for row in body["predictions"]:
        assert row["model"] == max(MODELS, key=lambda m: row[f"q::{m}"])


def test_invocations_accept_task_and_exponential_reward(server: str) -> None:
    frame = {"columns": ["prompt", "task"], "data": [["What is 3 plus 5?", "arithmetic"], ["Explain gravity.", None]]}
    status, body = _post(
        f"{server}/invocations", {"dataframe_split": frame, "params": {"reward": "exponential", "tau": 1e-12}}
    )
    assert status == 200, body
    for row in body["predictions"]:
        assert row["model"] == min(MODELS, key=lambda m: row[f"c::{m}"])  # tiny tau: cost dominates


def test_invocations_rescale_costs_by_price_factors(server: str) -> None:
    """A request's ``prices`` multiplies a model's predicted costs before choosing: with the cheap model a million
    times dearer, a negligible willingness to pay picks the other one, and the returned costs are the rescaled ones."""
    frame = {"columns": ["prompt"], "data": [["What is 3 plus 5?"], ["Prove Fermat's last theorem."]]}
    status, plain = _post(f"{server}/invocations", {"dataframe_split": frame, "params": {"lambda": 1e-10}})
    assert status == 200, plain
    status, body = _post(f"{server}/invocations",
                         {"dataframe_split": frame, "params": {"lambda": 1e-10, "prices": "cheap:1000000"}})
    assert status == 200, body
    for before, row in zip(plain["predictions"], body["predictions"], strict=True):
        assert before["model"] == "cheap" and row["model"] == "pricey"
        assert row["c::cheap"] == pytest.approx(before["c::cheap"] * 1e6, rel=1e-9)
        assert row["c::pricey"] == pytest.approx(before["c::pricey"], rel=1e-12)
        assert row["cost_hat"] == pytest.approx(row["c::pricey"])
    status, body = _post(f"{server}/invocations",
                         {"dataframe_split": frame, "params": {"prices": "gpt-9:0.5"}})
    assert status == 400 and "unknown model 'gpt-9'" in json.dumps(body)


def test_invocations_reject_bad_params(server: str) -> None:
    frame = {"columns": ["prompt"], "data": [["hello"]]}
    status, body = _post(f"{server}/invocations", {"dataframe_split": frame, "params": {"reward": "quadratic"}})
    assert status == 400 and "unknown reward" in json.dumps(body)
    status, body = _post(f"{server}/invocations", {"dataframe_split": {"columns": ["text"], "data": [["hi"]]}})
    assert status == 400


def test_the_compose_mlflow_server_answers_the_host_name_the_services_call_it_by(tmp_path: Path) -> None:
    """docker/compose.yaml's services call MLflow as ROUTER_MLFLOW_TRACKING_URI (http://mlflow:5000); MLflow 3
    refuses Host headers other than localhost and private IPs (403) unless the server names them: its command's
    --allowed-hosts, started here as a real server on 127.0.0.1 (sqlite), must let that Host and localhost:5000
    through."""
    import yaml
    from urllib.parse import urlparse

    compose = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker" / "compose.yaml").read_text())
    uri = next(s["environment"]["ROUTER_MLFLOW_TRACKING_URI"] for s in compose["services"].values()
               if "ROUTER_MLFLOW_TRACKING_URI" in (s.get("environment") or {}))
    allowed = [a for a in compose["services"]["mlflow"]["command"] if a.startswith("--allowed-hosts=")]
    assert len(allowed) == 1, compose["services"]["mlflow"]["command"]
    port = _free_port()
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ROUTER_"))}
    env["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    command = [str(venv_bin / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", allowed[0]]
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def status(host: str) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1",
                                         headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        _wait_until_up(proc, f"http://127.0.0.1:{port}/health", log_file)
        assert status(urlparse(uri).netloc) == 200 and status("localhost:5000") == 200
        assert status("attacker.example:5000") == 403  # the guard itself stays on
    finally:
        _stop(proc)
