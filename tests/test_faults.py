"""kill -9 during every step of a night, then re-run: the store is never half-written and the recovered night
ends exactly like a clean one.

Night 1 (setup, in this process): a few dozen real RouterBench prompts (arc_challenge + mbpp, the 11 real model
columns), trained and registered; its version is made champion by hand if the gate did not promote it (the
tiny data rarely beats the baselines). Night 2 lands production logs (new outcomes: training reruns) and two
backlog files. The clean night 2 runs in this process; the faulty one runs in subprocesses that SIGKILL
themselves at a named point (``router.faults``, ``ROUTER_FAULT_POINT``): during ingest, embed, train,
registration and routing, each re-run resuming the previous one. After each kill we check that no partial
batch is visible and nothing is duplicated; at the end the two stores, the MLflow registries and the decisions
must be equal.

Also here, because they need a trained night: an unreachable MLflow server (with credentials in its URI) fails
registration and routing cleanly, masked, with the store untouched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
CHUNK = 8  # prompts per committed embedding chunk (several chunks on tiny data)
BATCH = 8  # backlog queries per committed routing batch
SECRET = "s3cr3t-t0ken"


# ---------------------------------------------------------------------------------------------- the night
def run_night(home: Path) -> dict:
    """Every step of ``router.nightly`` in order (what the Prefect flow orchestrates), on ``home``."""
    import router.embeddings as embeddings
    from router import nightly
    from router.settings import Settings

    embeddings.CHUNK = CHUNK
    s = Settings(home=home, route_batch_size=BATCH)
    nightly.ingest_landing(s)
    nightly.embed(s)
    step = nightly.train(s)
    promotion = nightly.register_and_promote(s, step, flow_run_id="night")
    routing = nightly.route(s, flow_run_id="night")
    return {"step": step, "promotion": promotion, "routing": routing}


def _land_night1(home: Path) -> None:
    folder = home / "landing" / "routerbench"
    folder.mkdir(parents=True, exist_ok=True)
    for ev in ("arc_challenge", "mbpp"):
        for split, n in (("train", 14), ("test", 7)):
            df = pl.read_csv(DATA / "routerbench_subset" / f"{ev}_{split}.csv", infer_schema_length=0).head(n)
            df.select([c for c in df.columns if not c.endswith("|model_response")]).write_csv(
                folder / f"{ev}_{split}.csv")


def _land_night2(home: Path) -> None:
    logs = (DATA / "demo" / "logs.jsonl").read_text().splitlines()
    backlog = (DATA / "demo" / "backlog.jsonl").read_text().splitlines()
    (home / "landing" / "logs").mkdir(parents=True, exist_ok=True)
    (home / "landing" / "backlog").mkdir(parents=True, exist_ok=True)
    (home / "landing" / "logs" / "night2.jsonl").write_text("\n".join(logs[200:208]) + "\n")
    (home / "landing" / "backlog" / "b1.jsonl").write_text("\n".join(backlog[:12]) + "\n")
    (home / "landing" / "backlog" / "b2.jsonl").write_text("\n".join(backlog[12:24]) + "\n")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MLFLOW_"))}
    env.update(ROUTER_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def _night_in_subprocess(home: Path, fault: str | None) -> subprocess.CompletedProcess:
    extra = {"ROUTER_FAULT_POINT": fault} if fault else {}
    return subprocess.run([sys.executable, __file__, str(home)], env=_env(home, **extra), capture_output=True,
                          text=True, timeout=300)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock"))
    return dst


# --------------------------------------------------------------------------------------------- inspection
def _rows(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(home / "router.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _counts(home: Path) -> dict[str, int]:
    tables = ("prompts", "outcomes", "models", "backlog", "ingest_runs", "quarantine", "embeddings",
              "routing_decisions", "promotions", "training_runs")
    return {t: _rows(home, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def _decisions(home: Path) -> pl.DataFrame:
    con = duckdb.connect(str(home / "router.duckdb"), read_only=True)
    try:
        return con.sql("SELECT query_id, model_version, chosen_model, predicted_quality, predicted_cost_usd "
                       "FROM routing_decisions ORDER BY query_id, model_version").pl()
    finally:
        con.close()


def _consistent(home: Path) -> None:
    """The doctor's store checks (no registry): no orphan rows, every ingest run reconciles, keys unique."""
    from router.doctor import OK, run_checks
    from router.settings import Settings

    report = run_checks(Settings(home=home), check_registry=False)
    by_name = {c.name: c for c in report.checks}
    for name in ("schema", "orphans", "ingest runs"):
        assert by_name[name].status == OK, (name, by_name[name].detail)
    assert _rows(home, "SELECT count(*) - count(DISTINCT (query_id, model_version)) FROM routing_decisions") == [(0,)]
    assert _rows(home, "SELECT count(*) - count(DISTINCT (prompt_id, encoder)) FROM embeddings") == [(0,)]


def _versions(home: Path) -> list[tuple[int, str | None]]:
    from router.registry import promotion
    from router.settings import Settings

    return sorted((v.version, v.gate) for v in promotion.list_versions(Settings(home=home)))


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def night1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from router.registry import promotion
    from router.dataset import model_pool
    from router.settings import Settings
    from router.storage import open_store

    home = tmp_path_factory.mktemp("faults") / "night1"
    _land_night1(home)
    run_night(home)
    s = Settings(home=home)
    if promotion.champion_version(s) is None:  # the platform team promotes v1 by hand
        with open_store(s, read_only=True) as con:
            promotion.promote(s, 1, model_pool(con), reason="test setup")
    assert promotion.champion_version(s) == 1
    return home


@pytest.fixture(scope="module")
def clean(night1: Path) -> dict:
    home = _copy(night1, night1.parent / "clean")
    _land_night2(home)
    result = run_night(home)
    assert not result["step"].skipped and result["routing"]["routed"] == 24
    return {"home": home, **result}


# -------------------------------------------------------------------------------------------------- tests
def test_kill_minus_9_in_every_step_then_rerun_ends_like_a_clean_night(night1: Path, clean: dict) -> None:
    home = _copy(night1, night1.parent / "faulty")
    _land_night2(home)
    before = _counts(home)

    def killed(fault: str) -> None:
        proc = _night_in_subprocess(home, fault)
        assert proc.returncode == -signal.SIGKILL, (fault, proc.returncode, proc.stderr[-3000:])
        assert f"kill at {fault}" in proc.stderr
        _consistent(home)

    # ingest: the logs file committed, the first backlog file killed before its commit: none of it visible
    killed("ingest.commit#2")
    now = _counts(home)
    assert now["ingest_runs"] == before["ingest_runs"] + 1
    assert now["outcomes"] == before["outcomes"] + 8 and now["backlog"] == 0

    # embed: re-run ingests both backlog files, commits one chunk of vectors, dies in the second
    killed("embed.commit#2")
    now = _counts(home)
    assert now["backlog"] == 24 and now["ingest_runs"] == before["ingest_runs"] + 3
    assert now["embeddings"] == before["embeddings"] + CHUNK

    # train: routers fitted, nothing registered or recorded
    killed("train.fitted")
    assert _counts(home)["training_runs"] == before["training_runs"]
    assert _rows(home, "SELECT count(*) FROM prompts p WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
                       "WHERE e.prompt_id = p.prompt_id)") == [(0,)]
    assert [v for v, _ in _versions(home)] == [1]

    # registration: v2 registered and gated in MLflow, the store not yet told
    killed("register.gated")
    assert [v for v, _ in _versions(home)] == [1, 2]
    now = _counts(home)
    assert (now["promotions"], now["training_runs"]) == (before["promotions"], before["training_runs"])

    # routing: the first batch committed, the second killed before its commit
    killed("route.commit#2")
    assert _counts(home)["routing_decisions"] == BATCH
    assert _counts(home)["promotions"] == before["promotions"] + 1  # registration resumed, recorded once

    proc = _night_in_subprocess(home, None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _consistent(home)

    # the recovered night equals the clean one: same rows, same registry, same decisions
    assert _counts(home) == _counts(clean["home"])
    assert _versions(home) == _versions(clean["home"])  # no duplicate version from the killed registration
    ours, theirs = _decisions(home), _decisions(clean["home"])
    assert ours.height == theirs.height == 24
    assert ours.select("query_id", "model_version", "chosen_model").equals(
        theirs.select("query_id", "model_version", "chosen_model"))
    for col in ("predicted_quality", "predicted_cost_usd"):
        assert (ours[col] - theirs[col]).abs().max() < 1e-5
    promo = "SELECT challenger, champion_before, champion_after, promoted, reason FROM promotions ORDER BY decided_at"
    assert _rows(home, promo) == _rows(clean["home"], promo)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_unreachable_fails_cleanly_masked_and_writes_nothing(
        clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from router import nightly
    from router.registry import tracking
    from router.settings import Settings

    home = _copy(clean["home"], tmp_path / "ws")
    (home / "landing" / "backlog" / "b3.jsonl").write_text(
        "\n".join((DATA / "demo" / "backlog.jsonl").read_text().splitlines()[24:30]) + "\n")
    uri = f"http://router:{SECRET}@127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("ROUTER_MLFLOW_CONNECT_ATTEMPTS", "2")
    s = Settings(home=home, mlflow_tracking_uri=uri, route_batch_size=BATCH)
    nightly.ingest_landing(s)
    before, decisions = _counts(home), _decisions(home)
    caplog.set_level(logging.INFO)

    with pytest.raises(tracking.RegistryUnavailable) as info:  # registration of a (re)trained router
        nightly.register_and_promote(s, clean["step"], flow_run_id="no-mlflow")
    message = str(info.value)
    assert "unreachable" in message and "127.0.0.1" in message and "tried 2 times" in message
    with pytest.raises(tracking.RegistryUnavailable) as info:  # routing needs the champion: not "no champion"
        nightly.route(s)
    for text in (message, str(info.value), caplog.text):
        assert SECRET not in text and "***@127.0.0.1" in text
    assert _counts(home) == before and _decisions(home).equals(decisions)  # no promotion, no decision recorded
    assert _versions(home) == _versions(clean["home"])


def test_disk_full_inside_a_transaction_rolls_back_and_a_rerun_completes(settings, files, store, counts,
                                                                          monkeypatch) -> None:
    """ENOSPC injected just before the COMMIT of the second landing file (``ROUTER_FAULT_ACTION=enospc``)."""
    from router import faults, nightly

    for i, name in enumerate(("a.jsonl", "b.jsonl")):
        (settings.landing("logs")).mkdir(parents=True, exist_ok=True)
        rows = [files.log_record(10 * i + j) for j in range(3)]
        (settings.landing("logs") / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    store.close()
    monkeypatch.setenv("ROUTER_FAULT_POINT", "ingest.commit#2")
    monkeypatch.setenv("ROUTER_FAULT_ACTION", "enospc")
    faults.reset()
    with pytest.raises(OSError, match="No space left on device") as info:
        nightly.ingest_landing(settings)
    assert info.value.errno == 28
    _consistent(settings.workspace)
    after = _counts(settings.workspace)
    assert (after["ingest_runs"], after["outcomes"], after["prompts"]) == (1, 3, 3)  # a.jsonl whole, b.jsonl not
    monkeypatch.delenv("ROUTER_FAULT_POINT")
    summary = nightly.ingest_landing(settings)  # space freed: the re-run stores what was rolled back
    assert [(Path(f["file"]).name, f["status"], f["rows_new"]) for f in summary.files] == [
        ("a.jsonl", "skipped", 0), ("b.jsonl", "ingested", 3)]
    assert _counts(settings.workspace)["outcomes"] == 6


def _make_read_only(root: Path) -> list[Path]:
    """chmod a-w every file and folder; as root (chmod does not stop root) also ``chattr +i``. Returns what was
    made immutable, for the undo."""
    paths = sorted(root.rglob("*"), key=lambda p: -len(p.parts)) + [root]
    for p in paths:
        p.chmod(p.stat().st_mode & ~0o222)
    frozen = []
    if os.geteuid() == 0:
        frozen = [p for p in paths if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode == 0]
    return frozen


def _undo_read_only(root: Path, frozen: list[Path]) -> None:
    for p in reversed(frozen):
        subprocess.run(["chattr", "-i", str(p)], capture_output=True)
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)


def test_read_only_workspace_clear_error_and_store_intact(settings, files, store, tmp_path) -> None:
    import hashlib

    from router import nightly
    from router.storage import StoreError

    (settings.landing("logs")).mkdir(parents=True, exist_ok=True)
    (settings.landing("logs") / "a.jsonl").write_text(json.dumps(files.log_record(1)) + "\n")
    store.close()
    db = settings.database
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    frozen = _make_read_only(settings.workspace)
    try:
        try:
            with open(db, "ab"):
                writable = True
        except OSError:
            writable = False
        assert not writable, "could not make the workspace read-only on this machine"
        with pytest.raises(StoreError) as info:
            nightly.ingest_landing(settings)
        message = str(info.value)
        assert str(db) in message and "read-only or not writable" in message and "nothing was changed" in message
        proc = subprocess.run([str(Path(sys.executable).with_name("routerctl")), "doctor", "--no-registry"],
                              env=_env(settings.workspace), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr  # reading still works
    finally:
        _undo_read_only(settings.workspace, frozen)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert _counts(settings.workspace)["outcomes"] == 0


if __name__ == "__main__":  # the subprocess side of the fault tests: one night on the workspace given
    logging.basicConfig(level=logging.WARNING)
    out = run_night(Path(sys.argv[1]))
    print(json.dumps({"routed": out["routing"].get("routed")}))
