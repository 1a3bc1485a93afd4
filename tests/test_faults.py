"""kill -9 inside and between the steps of a night, then re-run: the store is never half-written and the
recovered night ends exactly like a clean one.

Night 1 (setup, in this process): a few dozen real RouterBench prompts (arc_challenge + mbpp, the 11 real model
columns), trained and registered; its version is made champion by hand if the gate did not promote it (on such
tiny data a baseline may be ahead beyond the noise). Night 2 lands production logs (new outcomes: training
reruns) and two backlog files. The clean night 2 runs ``router.nightly.STEPS`` in this process; the faulty one is
``routerctl nightly`` itself (the Prefect flow over the same list), in subprocesses that SIGKILL themselves at a
named point (``router.faults``, ``ROUTER_FAULT_POINT``): inside a step's transaction or work where it has such a
point, and at every step's boundary (``<step>.done``), each re-run resuming the previous one. After each kill we
check that no partial batch is visible and nothing is duplicated; at the end the two stores, the MLflow
registries and the decisions must be equal.

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
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
ROUTERCTL = str(Path(sys.executable).with_name("routerctl"))
CHUNK = 8  # prompts per committed embedding chunk (several chunks on tiny data): ROUTER_EMBED_CHUNK_SIZE
BATCH = 8  # backlog queries per committed routing batch: ROUTER_ROUTE_BATCH_SIZE
SECRET = "s3cr3t-t0ken"


# ---------------------------------------------------------------------------------------------- the night
def _settings(home: Path, **extra):
    from router.settings import Settings

    return Settings(home=home, embed_chunk_size=CHUNK, route_batch_size=BATCH, **extra)


def run_night(home: Path):
    """``router.nightly.STEPS`` in order, in this process, on ``home``: the night's results by step name."""
    from router import nightly

    night = nightly.Night(_settings(home), f"night-{home.name}", datetime.now(UTC).replace(tzinfo=None))
    return nightly.run_night(night).results


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MLFLOW_", "PREFECT_"))}
    env.update(ROUTER_HOME=str(home), ROUTER_EMBED_CHUNK_SIZE=str(CHUNK), ROUTER_ROUTE_BATCH_SIZE=str(BATCH),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def _routerctl_nightly(home: Path, fault: str | None) -> tuple[int, str]:
    """``routerctl nightly`` on ``home`` (Prefect's ephemeral server, its home beside the workspace); with
    ``fault``, killed at that point. Returns the exit status and the output. The process runs in its own
    session: a SIGKILL leaves its ephemeral Prefect server behind, which is killed with the session."""
    extra = {"ROUTER_FAULT_POINT": fault} if fault else {}
    prefect = {"PREFECT_HOME": str(home.parent / f"prefect-{home.name}"),
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = home.parent / f"{home.name}-{fault or 'rerun'}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([ROUTERCTL, "nightly"], env=_env(home, **extra, **prefect), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=home.parent)
        try:
            code = proc.wait(timeout=600)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return code, log.read_text()


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
    from router.storage import open_store

    home = tmp_path_factory.mktemp("faults") / "night1"
    _land_night1(home)
    run_night(home)
    s = _settings(home)
    if promotion.champion_version(s) is None:  # the platform team promotes v1 by hand
        with open_store(s, read_only=True) as con:
            promotion.promote(s, 1, model_pool(con), reason="test setup")
    assert promotion.champion_version(s) == 1
    return home


@pytest.fixture(scope="module")
def clean(night1: Path) -> dict:
    home = _copy(night1, night1.parent / "clean")
    _land_night2(home)
    results = run_night(home)
    assert not results["train"].skipped and results["route"]["routed"] == 24
    return {"home": home, **results}


# -------------------------------------------------------------------------------------------------- tests
#: Where a step can die half-way (inside its transaction, or between its work and its record): killed there
#: first, then at the step's boundary.
INSIDE = {"ingest": "ingest.commit#2", "embed": "embed.commit#2", "train": "train.fitted",
          "register": "register.gated", "route": "route.commit#2"}


def _unembedded(home: Path) -> int:
    return _rows(home, "SELECT count(*) FROM prompts p WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
                       "WHERE e.prompt_id = p.prompt_id)")[0][0]


def _latest_report(home: Path) -> str:
    reports = sorted((home / "reports").glob("20*/report.md"), key=lambda p: p.stat().st_mtime)
    return reports[-1].read_text() if reports else ""


def test_kill_minus_9_in_and_between_every_step_then_rerun_ends_like_a_clean_night(night1: Path, clean: dict
                                                                                     ) -> None:
    from router.nightly import STEPS

    home = _copy(night1, night1.parent / "faulty")
    _land_night2(home)
    before = _counts(home)
    seen: dict[str, dict[str, int]] = {}

    def check(point: str, now: dict[str, int]) -> None:
        """What the store holds after a kill at ``point`` (every earlier point was killed at before it)."""
        if point == "ingest.commit#2":  # the logs file committed, the first backlog file not: none of it visible
            assert now["ingest_runs"] == before["ingest_runs"] + 1
            assert now["outcomes"] == before["outcomes"] + 8 and now["backlog"] == 0
        elif point == "ingest.done":  # the re-run ingested both backlog files; nothing embedded yet
            assert now["backlog"] == 24 and now["ingest_runs"] == before["ingest_runs"] + 3
            assert now["embeddings"] == before["embeddings"]
        elif point == "validate.done":  # validation writes nothing
            assert now == seen["ingest.done"]
        elif point == "embed.commit#2":  # one chunk of vectors committed, the second killed before its commit
            assert now["embeddings"] == before["embeddings"] + CHUNK
        elif point in ("embed.done", "drift.done", "onboard.done", "train.fitted", "train.done"):
            # all embedded; none registered (night 2's inputs changed: the full retrain, not onboarding)
            assert _unembedded(home) == 0
            assert now["training_runs"] == before["training_runs"] and [v for v, _ in _versions(home)] == [1]
        elif point == "register.gated":  # v2 registered and gated in MLflow, the store not yet told
            assert [v for v, _ in _versions(home)] == [1, 2]
            assert (now["promotions"], now["training_runs"]) == (before["promotions"], before["training_runs"])
        elif point == "register.done":  # registration resumed: recorded once, no second version
            assert [v for v, _ in _versions(home)] == [1, 2]
            assert (now["promotions"], now["training_runs"]) == (before["promotions"] + 1,
                                                                 before["training_runs"] + 1)
            assert now["routing_decisions"] == 0
        elif point == "route.commit#2":  # the first batch committed, the second killed before its commit
            assert now["routing_decisions"] == BATCH and now["promotions"] == before["promotions"] + 1
        elif point == "route.done":
            assert now["routing_decisions"] == 24
        elif point == "scenarios.done":  # what-if scenarios stored for analysts; no decision added
            assert now == seen["route.done"] and _rows(home, "SELECT count(*) FROM routing_scenarios")[0][0] > 0
        elif point == "report.done":  # the night's report written, the doctor's section not yet
            assert now == seen["route.done"] and "## Doctor" not in _latest_report(home)
        elif point == "doctor.done":
            assert now == seen["route.done"] and "## Doctor" in _latest_report(home)
        else:
            raise AssertionError(f"no check for {point}")

    points = [p for step in STEPS for p in ([INSIDE[step.name]] if step.name in INSIDE else []) + [f"{step.name}.done"]]
    assert points[-1] == "doctor.done" and len(points) == len(STEPS) + len(INSIDE)
    for point in points:
        code, output = _routerctl_nightly(home, point)
        assert code == -signal.SIGKILL, (point, code, output[-3000:])
        assert f"kill at {point}" in output
        _consistent(home)
        seen[point] = _counts(home)
        check(point, seen[point])

    code, output = _routerctl_nightly(home, None)
    assert code == 0, output[-3000:]
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

    home = _copy(clean["home"], tmp_path / "ws")
    (home / "landing" / "backlog" / "b3.jsonl").write_text(
        "\n".join((DATA / "demo" / "backlog.jsonl").read_text().splitlines()[24:30]) + "\n")
    uri = f"http://router:{SECRET}@127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("ROUTER_MLFLOW_CONNECT_ATTEMPTS", "2")
    s = _settings(home, mlflow_tracking_uri=uri)
    nightly.ingest_landing(s)
    before, decisions = _counts(home), _decisions(home)
    caplog.set_level(logging.INFO)

    with pytest.raises(tracking.RegistryUnavailable) as info:  # registration of a (re)trained router
        nightly.register_and_promote(s, clean["train"], flow_run_id="no-mlflow")
    message = str(info.value)
    assert "unreachable" in message and "127.0.0.1" in message and "tried 2 times" in message
    with pytest.raises(tracking.RegistryUnavailable) as info:  # routing needs the champion: not "no champion"
        nightly.route(s)
    for text in (message, str(info.value), caplog.text):
        assert SECRET not in text and "***@127.0.0.1" in text
    assert _counts(home) == before and _decisions(home).equals(decisions)  # no promotion, no decision recorded
    assert _versions(home) == _versions(clean["home"])


def test_a_gate_that_cannot_load_the_champion_fails_closed_and_the_next_run_gates_again(
        night1: Path, clean: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transient error loading the champion fails the register step: no rejection and no promotion over a
    champion treated as absent, no store record, so the data key blocks nothing; the retry resumes the same
    MLflow run and version and gates it as a clean night does."""
    from router import nightly
    from router.registry import promotion, tracking

    home = _copy(night1, tmp_path / "ws")
    _land_night2(home)
    s = _settings(home)
    nightly.ingest_landing(s)
    nightly.embed(s)
    champion = promotion.champion_version(s)
    real = promotion.load_version

    def flaky(settings, version: int):  # noqa: ANN001, ANN202
        if version == champion:
            raise ConnectionResetError(104, "Connection reset by peer")
        return real(settings, version)

    monkeypatch.setattr(promotion, "load_version", flaky)
    before = _counts(home)
    with pytest.raises(tracking.RegistryUnavailable, match=f"did not complete: .*champion v{champion}.*reset by peer"):
        nightly.register_and_promote(s, clean["train"], flow_run_id="flaky")
    assert _counts(home) == before  # no promotion row, no training run: the data key is not taken
    assert _versions(home) == [*_versions(night1), (champion + 1, None)]  # registered, no gate decision
    assert promotion.champion_version(s) == champion

    monkeypatch.setattr(promotion, "load_version", real)
    again = nightly.register_and_promote(s, clean["train"], flow_run_id="retry")
    assert again.version == champion + 1 and _versions(home) == _versions(clean["home"])
    assert promotion.champion_version(s) == promotion.champion_version(_settings(clean["home"]))
    after = _counts(home)
    assert (after["promotions"], after["training_runs"]) == (before["promotions"] + 1, before["training_runs"] + 1)


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

