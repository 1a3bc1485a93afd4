"""Concurrency with real processes: the workspace lock, a DuckDB file held by another process, and analysts
reading the Parquet snapshots while the routing step writes.

The store is prepared with plain SQL (no encoder, no MLflow): prompts, a backlog and made-up 8-dim vectors;
routing uses a deterministic stand-in predictor, so these tests take seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROUTERCTL = str(Path(sys.executable).with_name("routerctl"))
N_QUERIES, BATCH, DIM = 120, 10, 8


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MLFLOW_", "PREFECT_"))}
    env.update(ROUTER_HOME=str(home), HF_HUB_OFFLINE="1", **extra)
    return env


def _spawn(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A Python child that prints ``ready`` once it holds what it was asked to hold."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


HOLD_LOCK = """
import sys, time
from pathlib import Path
from router.locking import workspace_lock
with workspace_lock(Path(sys.argv[1]), "pipeline"):
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
"""

HOLD_STORE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""

LOCKED_WRITER = """
import os, sys, time
from pathlib import Path
from router.locking import workspace_lock
log = Path(sys.argv[2])
with workspace_lock(Path(sys.argv[1]), "pipeline", wait_seconds=30):
    for i in range(5):
        with log.open("a") as fh:
            fh.write(f"{os.getpid()} {i}\\n")
        time.sleep(0.1)
"""


# -------------------------------------------------------------------------------------------------- locks
def test_nightly_exits_3_at_once_while_another_run_holds_the_lock(settings, tmp_path: Path) -> None:
    holder = _spawn(HOLD_LOCK, str(settings.workspace), "60")
    try:
        start = time.monotonic()
        proc = subprocess.run([ROUTERCTL, "nightly"], env=_env(settings.workspace), capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
        took = time.monotonic() - start
        assert proc.returncode == 3, (proc.stdout, proc.stderr)
        assert "another run holds" in proc.stderr and f"pid {holder.pid}" in proc.stderr
        assert "nothing was done" in proc.stderr and "Traceback" not in proc.stderr
        assert took < 30  # refused before starting Prefect
        assert not settings.database.exists()  # nothing written
    finally:
        holder.kill()
        holder.wait()

    # kill -9 left no stale lock: the kernel released it with the process
    from router.locking import holder as lock_holder
    from router.locking import workspace_lock

    assert lock_holder(settings.workspace) is None
    with workspace_lock(settings.workspace, "pipeline"):
        assert f"pid {os.getpid()}" in lock_holder(settings.workspace)  # any other open of the file sees it busy


def test_two_runs_started_at_once_never_interleave(settings, tmp_path: Path) -> None:
    """Both take the lock with a wait: the second waits for the first; their writes come in two blocks."""
    log = tmp_path / "writes.log"
    procs = [subprocess.Popen([sys.executable, "-c", LOCKED_WRITER, str(settings.workspace), str(log)])
             for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    pids = [line.split()[0] for line in log.read_text().splitlines()]
    assert len(pids) == 10 and len(set(pids[:5])) == 1 and len(set(pids[5:])) == 1 and pids[0] != pids[5]

    from router.locking import LockBusy, workspace_lock

    holder = _spawn(HOLD_LOCK, str(settings.workspace), "60")
    try:
        with pytest.raises(LockBusy, match="another run holds"), workspace_lock(settings.workspace, "pipeline"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# ------------------------------------------------------------------------------- one copy of every row
def _stored(settings) -> dict[str, int]:
    """Rows per table and distinct natural keys, read after every writer has exited."""
    from router.storage import connect, execute, table_counts

    con = connect(settings, read_only=True)
    try:
        counts = table_counts(con)
        dupes = {what: int(n) for what, n, _ in execute(con, "doctor/duplicate_keys")}
    finally:
        con.close()
    return {"prompts": counts["prompts"], "outcomes": counts["outcomes"], "ingest_runs": counts["ingest_runs"],
            "duplicated keys": sum(dupes.values())}


def test_two_ingests_of_one_file_started_together_store_one_copy(settings, files) -> None:
    """Both wait for the workspace lock (ROUTER_STORE_WAIT_SECONDS): one ingests, the other finds the file
    already stored; without a wait the second exits 3 (busy) or, if the first had finished, skips the file."""
    logs = files.logs("today.jsonl", [files.log_record(i) for i in range(40)])
    for wait in ("120", "0"):
        env = _env(settings.workspace, ROUTER_STORE_WAIT_SECONDS=wait, COLUMNS="200")
        procs = [subprocess.Popen([ROUTERCTL, "ingest", "logs", str(logs)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        done = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _, _ in done)
        assert codes in ([0, 0], [0, 3]), done
        assert all("Traceback" not in err for _, _, err in done)
        if wait == "120":
            assert sorted(out.count("ingested") for _, out, _ in done) == [0, 1], done  # one stored, one skipped
        assert _stored(settings) == {"prompts": 40, "outcomes": 40, "ingest_runs": 1, "duplicated keys": 0}


def test_an_ingest_during_a_nightly_waits_or_exits_3_and_loses_nothing(settings, files) -> None:
    """A nightly run holds the workspace lock (simulated by a child holding it): `routerctl ingest` exits 3 at
    once, writing nothing; with a wait it says whom it waits for and ingests once the run ends."""
    logs = files.logs("late.jsonl", [files.log_record(i) for i in range(5)])
    holder = _spawn(HOLD_LOCK, str(settings.workspace), "300")
    try:
        refused = subprocess.run([ROUTERCTL, "ingest", "logs", str(logs)], env=_env(settings.workspace),
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 3 and f"pid {holder.pid}" in refused.stderr, refused.stderr
        assert not settings.database.exists()  # nothing was written
        waiting = subprocess.Popen([ROUTERCTL, "ingest", "logs", str(logs)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   env=_env(settings.workspace, ROUTER_STORE_WAIT_SECONDS="120", COLUMNS="200"))
        said = waiting.stderr.readline()  # its first words: whom it waits for (the run still holds the lock)
        assert said.startswith("waiting up to 120 s for the workspace lock") and f"pid {holder.pid}" in said, said
        assert not settings.database.exists()
    finally:
        holder.kill()  # the run ends
        holder.wait()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "ingested" in out
    assert _stored(settings) == {"prompts": 5, "outcomes": 5, "ingest_runs": 1, "duplicated keys": 0}


def test_two_threads_ingesting_one_file_store_one_copy(settings, files) -> None:
    """Two threads of one process, each on its own connection: the second commit sees the first's run."""
    from concurrent.futures import ThreadPoolExecutor

    from router.ingest import ingest_file
    from router.storage import connect

    logs = files.logs("today.jsonl", [files.log_record(i) for i in range(30)])
    connect(settings).close()  # migrated once, before the threads

    def one() -> str:
        con = connect(settings)
        try:
            return ingest_file(con, "logs", logs, settings).status
        finally:
            con.close()

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda _: one(), range(2)))
    assert statuses == ["ingested", "skipped"]
    assert _stored(settings) == {"prompts": 30, "outcomes": 30, "ingest_runs": 1, "duplicated keys": 0}


# ---------------------------------------------------------------------------------------------- the store
def test_connections_draw_no_progress_bar(settings, store) -> None:
    """A batch job's stdout is a log: DuckDB's progress bar (drawn for statements over two seconds) is off on
    every connection the library opens, read-only ones included."""
    from router.storage import connect

    assert store.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0] is False
    store.close()
    reader = connect(settings, read_only=True)
    try:
        assert reader.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0] is False
    finally:
        reader.close()


def test_store_held_by_another_process_clear_error_retry_and_nothing_written(settings, store, monkeypatch) -> None:
    from router.storage import StoreError, connect, table_counts

    before = table_counts(store)
    store.close()
    holder = _spawn(HOLD_STORE, str(settings.database), "60")
    try:
        start = time.monotonic()
        with pytest.raises(StoreError) as info:
            connect(settings, wait=1.5)
        assert time.monotonic() - start >= 1.5  # retried before giving up
        message = str(info.value)
        assert str(settings.database) in message and "another process holds it" in message
        assert "retried" in message and "snapshots" in message
        with pytest.raises(StoreError, match="another process holds it"):
            connect(settings, read_only=True, wait=0)

        proc = subprocess.run([ROUTERCTL, "doctor", "--no-registry"], env=_env(settings.workspace),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 3 and "another process holds it" in proc.stderr  # busy
        assert "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()

    # a transient holder: the connect waits it out (ROUTER_STORE_WAIT_SECONDS) and then works
    holder = _spawn(HOLD_STORE, str(settings.database), "1.5")
    try:
        monkeypatch.setenv("ROUTER_STORE_WAIT_SECONDS", "30")
        start = time.monotonic()
        con = connect(settings)
        waited = time.monotonic() - start
    finally:
        monkeypatch.delenv("ROUTER_STORE_WAIT_SECONDS")
        holder.wait(timeout=30)
    try:
        assert waited > 0.5 and table_counts(con) == before
    finally:
        con.close()


# --------------------------------------------------------------------------------- analysts vs the writer
def _prepare_store(con) -> None:
    """N_QUERIES backlog queries with prompts and made-up DIM-dim vectors (plain SQL, no encoder)."""
    now = "TIMESTAMP '2026-01-01 00:00:00'"
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N_QUERIES, DIM)).astype(np.float32)
    frame = pl.DataFrame({
        "query_id": [f"q-{i:04d}" for i in range(N_QUERIES)],
        "prompt_id": [f"p{i:04d}" for i in range(N_QUERIES)],
        "text": [f"Prompt number {i}" for i in range(N_QUERIES)],
        "vector": pl.Series(vectors.tolist(), dtype=pl.List(pl.Float32)),
    })
    con.register("prep", frame)
    con.execute(f"INSERT INTO prompts SELECT prompt_id, text, length(text), 'demo', 'backlog', {now} FROM prep")
    con.execute(f"INSERT INTO backlog SELECT query_id, prompt_id, 'demo', NULL, 'run0', {now} FROM prep")
    con.execute(f"INSERT INTO embeddings (prompt_id, encoder, dim, vector, embedded_at) SELECT prompt_id, 'fake', {DIM}, vector, {now} FROM prep")
    con.execute(f"INSERT INTO ingest_runs VALUES ('run0', 'backlog', 'prep', 'x', {N_QUERIES}, {N_QUERIES}, "
                f"{N_QUERIES}, {N_QUERIES}, 0, {now}, {now}, NULL)")
    con.unregister("prep")


WRITER = """
import json, sys, time
from pathlib import Path
import numpy as np
from router.routing import route_backlog
from router.settings import Settings
from router.snapshots import export_snapshots
from router.storage import connect

class Stand_in:
    models = ["small", "large"]
    def predict(self, X, chars, tasks=None):
        q = np.stack([1 / (1 + np.exp(-X[:, 0])), 1 / (1 + np.exp(-X[:, 1]))], axis=1)
        return q, np.tile([0.001, 0.01], (len(X), 1))

s = Settings()
snaps = Path(sys.argv[1])
exported = []
con = connect(s)
def progress(done, total):
    export_snapshots(con, snaps)       # what the report step does, here after every committed batch
    exported.append(done)
    time.sleep(0.05)
export_snapshots(con, snaps)
exported.append(0)
print("ready", flush=True)
time.sleep(0.5)
start = time.monotonic()
summary = route_backlog(con, Stand_in(), model_version="1", router_name="r", encoder="fake",
                        batch_size=int(sys.argv[2]), progress=progress)
con.close()
print(json.dumps({"exported": exported, "routed": summary.routed, "seconds": time.monotonic() - start}))
"""

#: Reads the way docs/reliability.md tells analysts to: DuckDB's read_parquet by path, or polars/pyarrow through
#: one open file (a reader that opens the path twice, like ``pl.read_parquet(path)``, can straddle a swap).
READER = """
import json, sys
from pathlib import Path
import duckdb, polars as pl
snaps, stop = Path(sys.argv[1]), Path(sys.argv[2])
con = duckdb.connect()
counts, errors = [], []
print("ready", flush=True)
while not stop.exists():
    try:
        latest, distinct = con.sql("SELECT count(*), count(DISTINCT query_id) FROM read_parquet($p)",
                                   params={"p": str(snaps / "latest_decisions.parquet")}).fetchall()[0]
        with open(snaps / "routing_decisions.parquet", "rb") as fh:
            every = pl.read_parquet(fh).height
        counts.append([latest, distinct, every])
    except Exception as exc:
        errors.append(repr(exc))
print(json.dumps({"counts": counts, "errors": errors}))
"""


def test_analysts_reading_snapshots_never_block_the_writer_nor_see_torn_data(settings, store, tmp_path) -> None:
    _prepare_store(store)
    store.close()
    snaps, stop = tmp_path / "snapshots", tmp_path / "stop"
    writer = _spawn(WRITER, str(snaps), str(BATCH), env=_env(settings.workspace))
    reader = _spawn(READER, str(snaps), str(stop))
    try:
        w_out, w_err = writer.communicate(timeout=120)
    finally:
        stop.touch()
    r_out, r_err = reader.communicate(timeout=60)
    assert writer.returncode == 0, w_err[-3000:]
    assert reader.returncode == 0, r_err[-3000:]
    written = json.loads(w_out.strip().splitlines()[-1])
    read = json.loads(r_out.strip().splitlines()[-1])

    assert written["routed"] == N_QUERIES
    assert written["exported"] == list(range(0, N_QUERIES + 1, BATCH))
    assert read["errors"] == []  # every read succeeded: no torn or half-renamed file
    counts = read["counts"]
    assert len(counts) >= 20, len(counts)
    assert len({c[0] for c in counts}) >= 3  # reads really overlapped the writes
    for latest, distinct, every in counts:  # each file is an old or a new snapshot, whole
        assert latest in written["exported"] and every in written["exported"] and latest == distinct
    assert [c[0] for c in counts] == sorted(c[0] for c in counts)  # never goes back to an older snapshot


def test_on_demand_and_distributed_flows_take_the_workspace_lock(settings, files, prefect_ephemeral) -> None:
    """The deployments' on-demand flows (ingest, route_backlog) and the Dask flows write the store as the nightly
    does: while a run holds the workspace lock, each fails at once naming the holder and writes nothing."""
    from flows import nightly as flows_nightly
    from flows import scale
    from router.locking import LockBusy

    landing = settings.landing("logs")
    landing.mkdir(parents=True, exist_ok=True)
    files.logs("late.jsonl", [files.log_record(i) for i in range(5)]).rename(landing / "late.jsonl")
    holder = _spawn(HOLD_LOCK, str(settings.workspace), "300")
    try:
        for name, run in (("ingest", lambda: flows_nightly.ingest(return_state=True)),
                          ("route_backlog", lambda: flows_nightly.route_backlog(reward_param=1.0, return_state=True)),
                          ("embed-distributed", lambda: scale.embed_distributed(chunks=2, return_state=True)),
                          ("route-distributed", lambda: scale.route_distributed(
                              chunks=2, predictor=object(), model_version="1", reward_param=1.0,
                              return_state=True))):
            state = run()
            assert state.is_failed(), name
            with pytest.raises(LockBusy, match=f"pid {holder.pid}"):
                state.result()
        assert not settings.database.exists()  # nothing was written
    finally:
        holder.kill()
        holder.wait()
    state = flows_nightly.ingest(return_state=True)  # the run ended: the same flow ingests the file
    assert state.is_completed() and state.result()["rows_new"] == 5


def test_a_damaged_store_under_a_path_naming_a_lock_is_not_taken_for_a_busy_one(tmp_path: Path) -> None:
    """DuckDB's error names the file: a workspace under /mnt/blockstore/... whose store is not a DuckDB file is
    bad input (exit 2, at once), not another process holding it (exit 3 after the retries)."""
    from router.errors import BAD_INPUT
    from router.settings import Settings
    from router.storage import StoreError, connect

    settings = Settings(home=tmp_path / "blockstore" / "ws")
    settings.ensure_workspace()
    settings.database.write_bytes(b"not a database " * 100)
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        connect(settings, wait=5)
    assert time.monotonic() - start < 5  # not retried as if busy
    assert info.value.exit_code == BAD_INPUT and "another process holds it" not in str(info.value), str(info.value)
