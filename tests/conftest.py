"""Shared fixtures: a throw-away workspace, its store, and writers for small input files.

* ``settings`` - :class:`~router.settings.Settings` whose workspace (``ROUTER_HOME``) is a temp folder; every
  other ``ROUTER_*`` variable is cleared so the developer's environment cannot leak in.
* ``store`` - an open, migrated DuckDB connection on that workspace (closed after the test).
* ``files`` - :class:`DataFiles`, writing RouterBench (wide), production-log and backlog files in any
  supported format (CSV, Parquet, JSONL, pickle, optionally gzip'd), or raw bytes for broken inputs.
* ``ingest`` - ``ingest(kind, path)``: :func:`router.ingest.ingest_file` on that store.
* ``counts`` - ``counts()``: row count of every table (compare before/after to prove nothing changed).
* ``torch_threads`` - lets a test change torch's process-wide thread count; restored afterwards.
* ``cli`` - ``cli(*args)``: ``routerctl ARGS`` in-process (Typer's runner, ``nightly`` included) against the
  ``settings`` workspace, on wide consoles so paths never wrap.
* ``mlflow_answering`` - ``mlflow_answering(status, error_code, message)``: the URI of a stand-in MLflow server
  on 127.0.0.1 that answers every request with that HTTP status and MLflow error body (stopped after the test).

Nothing is written to the current directory; the bundled encoder is used offline.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: The checkout's root, for ``bench`` (developer tooling, not installed): appended, so ``router`` and ``flows``
#: still resolve as they would without it.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

#: Made-up model pool: nothing in the code knows these names.
MODELS = ("alpha-7b", "beta/chat-v2", "gamma")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from router.settings import Settings

    for name in list(os.environ):
        if name.startswith("ROUTER_"):
            monkeypatch.delenv(name)
    home = tmp_path / "router_home"
    monkeypatch.setenv("ROUTER_HOME", str(home))
    s = Settings()
    assert s.workspace == home.resolve()
    s.ensure_workspace()
    return s


@pytest.fixture
def store(settings) -> Iterator[Any]:
    from router.storage import connect

    con = connect(settings)
    try:
        yield con
    finally:
        con.close()


@pytest.fixture
def ingest(store, settings) -> Callable[..., Any]:
    from router.ingest import ingest_file

    def run(kind: str, path: Path, **kwargs: Any):
        result = ingest_file(store, kind, Path(path), settings, **kwargs)
        # Every file the tests ingest (the bad-input catalog included) is small enough for GX to validate all
        # of it: the suite's compiled checks must agree with GX on every record.
        assert result.gx_disagreements == 0, result
        if result.status == "ingested":  # where an ingest's time went, part by part
            sec = result.seconds
            assert list(sec) == ["read", "validate", "commit", "docs"], sec
            assert all(v >= 0 for v in sec.values()), sec
            # GX runs in the background from the end of the compiled checks and has answered before the commit
            assert 0 <= result.gx_seconds <= sec["validate"] + sec["commit"] + 0.002, (result.gx_seconds, sec)
        return result

    return run


@pytest.fixture
def counts(store) -> Callable[[], dict[str, int]]:
    from router.storage import table_counts

    return lambda: table_counts(store)


@pytest.fixture
def torch_threads() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli(settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    from typer.testing import CliRunner

    import flows.cli  # noqa: F401  (registers `nightly` on the same app)
    from router.cli import app
    from router.cli.app import console, err_console

    monkeypatch.setattr(console, "width", 250)
    monkeypatch.setattr(err_console, "width", 250)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def files(tmp_path: Path) -> DataFiles:
    return DataFiles(tmp_path / "inputs")


def table(con, name: str):
    """A whole table as a polars frame (tests read tables through the relational API, no SQL text)."""
    return con.table(name).pl()


class TwoModelRouter:
    """A fixed router for routing tests: ``cheap`` ($0.001 a prompt) and ``rich`` ($0.01, quality 0.9). A prompt
    whose vector's first coordinate is 1 is hard for ``cheap`` (quality 0.1), any other gets ``easy``."""

    models = ["cheap", "rich"]

    def __init__(self, easy: float = 0.8) -> None:
        self.easy = easy

    def predict(self, X, prompt_chars, tasks=None):  # noqa: ANN001, ANN201
        import numpy as np

        hard = np.asarray(X)[:, 0] > 0.5
        q = np.column_stack([np.where(hard, 0.1, self.easy), np.full(len(X), 0.9)])
        return q, np.tile([0.001, 0.01], (len(X), 1))


def embed_backlog(con, hard: Sequence[str] = ()) -> None:
    """Give the backlog's prompts that have none a 2-d vector under encoder ``enc``: [1, 0] (hard for
    :class:`TwoModelRouter`'s ``cheap``) for the prompts of the queries ``hard``, [0, 1] for the others."""
    con.execute("INSERT INTO embeddings (prompt_id, encoder, dim, vector, embedded_at) "
                "SELECT DISTINCT b.prompt_id, 'enc', 2, CASE WHEN b.prompt_id IN (SELECT prompt_id FROM backlog "
                "WHERE list_contains($hard, query_id)) THEN [1.0, 0.0] ELSE [0.0, 1.0] END, now()::TIMESTAMP "
                "FROM backlog b ANTI JOIN embeddings e USING (prompt_id)", {"hard": list(hard)})


class DataFiles:
    """Writes small input files under ``root``; the format follows the file name's suffix."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------ records
    @staticmethod
    def routerbench_rows(n: int = 4, models: Sequence[str] = MODELS, evals: Sequence[str] = ("math", "code"),
                         start: int = 0, index: bool = True) -> list[dict[str, Any]]:
        """Wide RouterBench rows; row i has score ``(i + j) % 2`` and cost ``(j + 1) / 1000`` for model j."""
        rows = []
        for i in range(start, start + n):
            row: dict[str, Any] = {"": i} if index else {}
            row |= {"sample_id": f"{evals[i % len(evals)]}.{i}", "prompt": f"['Question number {i}?']",
                    "eval_name": evals[i % len(evals)]}
            for j, m in enumerate(models):
                row[m] = float((i + j) % 2)
            for j, m in enumerate(models):
                row[m + "|total_cost"] = (j + 1) / 1000
            row["oracle_model_to_route_to"] = models[0]
            rows.append(row)
        return rows

    @staticmethod
    def log_record(i: int = 0, **overrides: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"request_id": f"req-{i}", "ts": f"2025-03-0{1 + i % 9}T12:00:00Z",
                               "prompt": f"Log prompt {i}", "model": "alpha-7b", "quality": 0.5,
                               "cost_usd": 0.001 * (i + 1)}
        rec.update(overrides)
        return rec

    @staticmethod
    def backlog_record(i: int = 0, **overrides: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"query_id": f"q-{i}", "prompt": f"Backlog prompt {i}"}
        rec.update(overrides)
        return rec

    # ------------------------------------------------------------------------------------------ writers
    def routerbench(self, name: str = "bench_train.csv", **kwargs: Any) -> Path:
        return self.write(name, self.routerbench_rows(**kwargs))

    def logs(self, name: str = "logs.jsonl", records: Iterable[dict[str, Any]] | None = None, n: int = 3) -> Path:
        return self.write(name, list(records) if records is not None else [self.log_record(i) for i in range(n)])

    def backlog(self, name: str = "backlog.jsonl", records: Iterable[dict[str, Any]] | None = None,
                n: int = 3) -> Path:
        return self.write(name, list(records) if records is not None else [self.backlog_record(i) for i in range(n)])

    def raw(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def write(self, name: str, rows: list[dict[str, Any]]) -> Path:
        """Rows as ``name``'s format (.csv, .parquet, .jsonl, .pkl; a trailing .gz compresses)."""
        suffixes = Path(name).suffixes
        gz = suffixes[-1] == ".gz"
        fmt = suffixes[-2] if gz else suffixes[-1]
        data = {".csv": _csv_bytes, ".parquet": _parquet_bytes, ".jsonl": _jsonl_bytes, ".ndjson": _jsonl_bytes,
                ".pkl": _pickle_bytes}[fmt](rows)
        return self.raw(name, gzip.compress(data) if gz else data)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


def _parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    import polars as pl

    frame = pl.DataFrame(rows, infer_schema_length=None)
    if "" in frame.columns:  # Parquet column names must not be empty: pandas' name for the index
        frame = frame.rename({"": "__index_level_0__"})
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


def _pickle_bytes(rows: list[dict[str, Any]]) -> bytes:
    """RouterBench's own format: a pandas frame whose index is the original row number."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    if "" in frame.columns:
        frame = frame.set_index("").rename_axis(None)
    return pickle.dumps(frame)


# ---------------------------------------------------------------------------------------------- checks
@pytest.fixture
def reconciled(store) -> Callable[[Any], Any]:
    """``reconciled(result)``: the run's ``ingest_runs`` row matches the result and reconciles
    (rows_in = rows_ok + rows_quarantined, as many quarantine rows as rows_quarantined). Returns the run's
    quarantine rows (polars), sorted by row number."""
    import polars as pl

    def check(result: Any):
        assert result.status == "ingested", result
        runs = table(store, "ingest_runs").filter(pl.col("run_id") == result.run_id)
        assert runs.height == 1
        run = runs.row(0, named=True)
        assert (run["rows_in"], run["rows_ok"], run["rows_new"], run["rows_quarantined"]) == (
            result.rows_in, result.rows_ok, result.rows_new, result.rows_quarantined)
        assert run["rows_in"] == run["rows_ok"] + run["rows_quarantined"]
        assert run["file"] == result.file
        quarantined = table(store, "quarantine").filter(pl.col("ingest_run_id") == result.run_id)
        assert quarantined.height == run["rows_quarantined"]
        assert quarantined["reason"].null_count() == 0
        return quarantined.sort("row_number", "row_key", nulls_last=True)

    return check


@pytest.fixture
def rejected(ingest, counts) -> Callable[..., str]:
    """``rejected(kind, path, *needles)``: the file is refused whole with an :class:`IngestError` whose
    message names the file and every needle, and no table changed. Returns the message."""
    from router.ingest import IngestError

    def check(kind: str, path: Path, *needles: str, **kwargs: Any) -> str:
        before = counts()
        with pytest.raises(IngestError) as info:
            ingest(kind, path, **kwargs)
        message = str(info.value)
        assert str(path) in message
        for needle in needles:
            assert needle in message, f"{needle!r} not in {message!r}"
        assert counts() == before
        return message

    return check


@pytest.fixture
def prefect_ephemeral(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Flows in this process use Prefect's ephemeral server, stopped when the test ends: left to Prefect's exit
    hook, it logs its stop to a stream pytest has already closed ("I/O operation on closed file"). The flows'
    queued logs and events are sent first, while the server can take them ("Error logging to API" otherwise)."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    yield
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=30)
    SubprocessASGIServer().stop()  # the ephemeral server is the instance without a fixed port


@pytest.fixture
def mlflow_answering() -> Iterator[Callable[[int, str, str], str]]:
    """``start(status, error_code, message)`` -> ``http://127.0.0.1:PORT``: a server answering every request as an
    MLflow server answers an error (``{"error_code": ..., "message": ...}`` with ``status``), e.g. 403
    ``PERMISSION_DENIED`` (a server behind an auth proxy) or 404 ``RESOURCE_DOES_NOT_EXIST`` (nothing registered)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers: list[ThreadingHTTPServer] = []

    def start(status: int, error_code: str, message: str) -> str:
        body = json.dumps({"error_code": error_code, "message": message}).encode()

        class Answer(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = answer

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
