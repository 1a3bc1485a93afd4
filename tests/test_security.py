"""Security: SQL only from ``sql/`` with bound values, SQL-looking input stored as data, credentials never
printed, logged or reported.

Covered elsewhere (not repeated here):

* ``.pkl`` files are unpickled only when named or explicitly allowed: ``tests/test_ingest.py::
  test_pickles_are_unpickled_only_when_named_or_allowed`` (catalog #43, docs/reliability.md).
* Model artefacts: weights are safetensors, and the pyfunc / gate refuse a pool or prices file failing its
  schema: ``tests/test_registry.py::test_model_pool_schema_rejects``, ``test_pyfunc_refuses_a_tampered_pool``,
  ``test_gate_rejects_a_version_whose_stored_pool_was_tampered``.
* Landing-folder files resolve and stay inside their folder (symlinks, ``..``): ``tests/test_bad_inputs.py::
  test_symlinks_inside_the_folder_are_followed_and_escaping_ones_skipped``,
  ``test_path_traversal_cannot_reach_outside_the_folder`` (catalog #39, #40).
"""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import table

ROOT = Path(__file__).resolve().parents[1]
ROUTERCTL = str(Path(sys.executable).with_name("routerctl"))
SECRET = "hunter2-secret"
EVIL = "x'); DROP TABLE outcomes; --"

#: SQL in a Python string: a statement keyword followed by the clause that makes it a statement.
SQL_TEXT = re.compile(
    r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(OR\s+REPLACE\s+)?"
    r"(TEMP\s+|TEMPORARY\s+)?(TABLE|VIEW|INDEX|SEQUENCE|MACRO)\s+(IF\s+NOT\s+EXISTS\s+)?[\w.\"]+\s*(\(|AS\s+SELECT)|"
    r"DROP\s+(TABLE|VIEW|INDEX)\s+(IF\s+EXISTS\s+)?[\w.\"]+|ALTER\s+TABLE\s+[\w.\"]+\s+(ADD|DROP|RENAME)|"
    r"COPY\s+\S+\s+(TO|FROM)|ATTACH\s)\b",
    re.IGNORECASE,
)
#: (file, text excerpt) of string literals allowed to look like SQL: none today. Add one only with a reason.
ALLOWED_SQL_LITERALS: set[tuple[str, str]] = set()
EXECUTING = {"execute", "executemany", "sql", "query_df", "from_query"}


def _sources() -> list[Path]:
    return sorted([*(ROOT / "router").rglob("*.py"), *(ROOT / "flows").rglob("*.py")])


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _literal_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, holes as {}
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def test_no_sql_text_in_python_sources() -> None:
    """Every SQL statement lives in sql/ (docstrings and comments may talk about SQL; code may not hold it)."""
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _docstrings(tree) | {id(v) for p in ast.walk(tree) if isinstance(p, ast.JoinedStr) for v in p.values}
        for node in ast.walk(tree):
            if id(node) in skip:  # docstrings, and the pieces of an f-string (checked whole)
                continue
            text = _literal_text(node)
            if text and SQL_TEXT.search(text):
                rel = str(path.relative_to(ROOT))
                if not any(rel == f and excerpt in text for f, excerpt in ALLOWED_SQL_LITERALS):
                    found.append(f"{rel}:{node.lineno}: {text[:80]!r}")
    assert not found, "SQL text outside sql/:\n" + "\n".join(found)
    for sql in ("SELECT a FROM t", "insert into t values (1)", "CREATE TABLE t (a INT)", "DROP TABLE outcomes;",
                "UPDATE t SET a = 1", "DELETE FROM t", "create or replace view v as select 1"):
        assert SQL_TEXT.search(sql), sql  # the scan finds what it looks for
    assert not SQL_TEXT.search("vs DuckDB CREATE TABLE AS of the same rows")  # prose naming a feature


def _built_string(node: ast.AST) -> bool:
    """An f-string, a concatenation/%-format of strings, or ``"...".format(...)``: text built from values."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return any(isinstance(s, (ast.Constant, ast.JoinedStr)) for s in (node.left, node.right))
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def test_no_built_strings_passed_to_execute_or_sql() -> None:
    """``con.execute`` / ``con.sql`` only ever get named SQL (``query(...)``) or a variable holding it, never an
    f-string or a concatenation: values are bound as parameters, identifiers never interpolated."""
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in EXECUTING and node.args and _built_string(node.args[0])):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:100]}")
    assert not found, "SQL built from values:\n" + "\n".join(found)
    probe = ast.parse('con.execute(f"SELECT * FROM {t}")').body[0].value
    assert _built_string(probe.args[0])  # the check catches what it looks for


# ------------------------------------------------------------------------------------- SQL in the data
def test_sql_in_names_and_ids_is_stored_as_plain_data(files, ingest, store, counts) -> None:
    evil_model = EVIL
    ingest("logs", files.logs("evil.jsonl", records=[
        files.log_record(0, model=evil_model), files.log_record(1, request_id=EVIL, prompt=EVIL)]))
    ingest("backlog", files.backlog("evil.jsonl", records=[files.backlog_record(0, query_id=EVIL, task=EVIL)]))
    bench = files.routerbench("evil_train.csv", models=(EVIL, "gamma"), n=2)
    result = ingest("routerbench", bench)
    assert result.rows_quarantined == 0 and EVIL in result.models

    assert EVIL in table(store, "models")["name"].to_list()  # the name, verbatim, as a row
    outcomes = table(store, "outcomes")
    assert outcomes.height == counts()["outcomes"] == 2 + 4  # the table still exists, every row is there
    assert outcomes.filter(pl.col("model") == EVIL).height == 3
    assert outcomes.filter(pl.col("sample_key") == EVIL).height == 1
    assert table(store, "backlog")["query_id"].to_list() == [EVIL]
    assert EVIL in table(store, "prompts")["text"].to_list()


# --------------------------------------------------------------------------------------------- secrets
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def secret_uri() -> str:
    return f"http://analyst:{SECRET}@127.0.0.1:{_closed_port()}"


def _routerctl(home: Path, uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MLFLOW_"))}
    env.update(ROUTER_HOME=str(home), ROUTER_MLFLOW_TRACKING_URI=uri, ROUTER_MLFLOW_CONNECT_ATTEMPTS="1",
               HF_HUB_OFFLINE="1")
    return subprocess.run([ROUTERCTL, *args], env=env, capture_output=True, text=True, timeout=120)


def test_credentials_in_the_tracking_uri_never_reach_output_logs_or_reports(
        settings, store, secret_uri, tmp_path, monkeypatch, caplog) -> None:
    store.close()
    listed = _routerctl(settings.workspace, secret_uri, "models", "list")
    doctor = _routerctl(settings.workspace, secret_uri, "doctor")
    status = _routerctl(settings.workspace, secret_uri, "status")
    assert listed.returncode == 4 and "unreachable" in listed.stderr and "Traceback" not in listed.stderr
    assert doctor.returncode == 1 and "registry unreachable" in doctor.stdout
    assert status.returncode == 0 and "http://***@127.0.0.1" in status.stdout
    for proc in (listed, doctor, status):
        assert SECRET not in proc.stdout + proc.stderr

    # the nightly's doctor step: its problem goes into report.md and night.json, masked
    import logging

    from router.doctor import run_checks
    from router.night_report import append_doctor
    from router.settings import Settings

    monkeypatch.setenv("ROUTER_MLFLOW_CONNECT_ATTEMPTS", "1")
    caplog.set_level(logging.DEBUG)
    s = Settings(home=settings.workspace, mlflow_tracking_uri=secret_uri)
    result = run_checks(s).as_dict()
    assert not result["ok"] and any("registry unreachable" in p for p in result["problems"])
    night = tmp_path / "reports" / "2026-01-01"
    night.mkdir(parents=True)
    (night / "report.md").write_text("# Nightly report\n")
    append_doctor(night, tmp_path / "reports", result)
    written = "".join(p.read_text() for p in (tmp_path / "reports").rglob("*") if p.is_file())
    assert "## Doctor" in written and "registry unreachable" in written and "***@127.0.0.1" in written
    for text in (written, caplog.text):
        assert SECRET not in text


def test_masking_helper() -> None:
    from router.redact import mask, mask_uri

    assert mask_uri(f"https://user:{SECRET}@mlflow.example.com/x") == "https://***@mlflow.example.com/x"
    assert mask_uri(f"postgresql://mlflow:{SECRET}@db:5432/mlflow") == "postgresql://***@db:5432/mlflow"
    # an unescaped @ in the password: URL parsers split at the last @, so the mask runs to it
    assert mask_uri(f"http://analyst:p@{SECRET}@127.0.0.1:1") == "http://***@127.0.0.1:1"
    assert mask(f"http://a:{SECRET}@h1/x and http://b:p@{SECRET}@h2 failed") == "http://***@h1/x and http://***@h2 failed"
    assert mask("https://h/api?user=a@b.example sent") == "https://h/api?user=a@b.example sent"  # no user info
    assert mask(f"GET https://h/api?token={SECRET}&x=1 failed") == "GET https://h/api?token=***&x=1 failed"
    assert mask_uri("sqlite:////abs/path/mlflow.db") == "sqlite:////abs/path/mlflow.db"
    assert mask_uri(None) == ""
