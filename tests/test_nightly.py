"""The nightly flow end to end: real Prefect (ephemeral server), real MLflow (sqlite), real DuckDB, the shipped
data. Slow (embeds the shipped prompts once, trains twice): one module-scoped workspace serves every test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
ROUTERCTL = str(Path(sys.executable).with_name("routerctl"))
pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "PREFECT_", "MLFLOW_"))}
    env.update(ROUTER_HOME=str(home), HF_HUB_OFFLINE="1", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    return env


def _routerctl(home: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([ROUTERCTL, *args], env=_env(home), cwd=home.parent, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"routerctl {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _query(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(home / "router.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two nightly runs on the shipped data in one workspace; returns what each printed and took."""
    home = tmp_path_factory.mktemp("nightly") / "ws"
    runs = []
    for _ in range(2):
        start = datetime.now(UTC)
        proc = _routerctl(home, "nightly", "--demo")
        runs.append({"seconds": (datetime.now(UTC) - start).total_seconds(), "stdout": proc.stdout})
    return {"home": home, "runs": runs}


def test_first_night_trains_promotes_and_routes_the_whole_backlog(night: dict) -> None:
    home = night["home"]
    backlog = _query(home, "SELECT count(*) FROM backlog")[0][0]
    assert backlog == 953  # every test prompt of the shipped subset, data/demo/backlog.jsonl
    decisions = _query(home, "SELECT count(*), count(DISTINCT query_id), count(DISTINCT model_version), "
                             "min(predicted_cost_usd), min(predicted_quality), max(predicted_quality) "
                             "FROM routing_decisions")[0]
    assert decisions[0] == decisions[1] == backlog
    assert decisions[2] == 1
    assert decisions[3] > 0 and 0 < decisions[4] <= decisions[5] < 1
    chosen = {m for (m,) in _query(home, "SELECT DISTINCT chosen_model FROM routing_decisions")}
    pool = {m for (m,) in _query(home, "SELECT name FROM models")}
    assert chosen <= pool and len(pool) == 11

    promotion = _query(home, "SELECT challenger, champion_after, promoted, challenger_aiq, baseline_aiq, reason, "
                             "baseline_se FROM champion_history")
    assert len(promotion) == 1
    challenger, champion, promoted, aiq, baseline, reason, se = promotion[0]
    assert promoted and champion == challenger == "1" and aiq > baseline
    # the first version's bar allows for the noise of the AIQ difference, measured on the same rows
    assert 0 < se < 0.05 and f"standard errors of the difference ({se:.6f})" in reason

    from router.registry.promotion import champion_version
    from router.settings import Settings

    assert champion_version(Settings(home=home)) == 1

    # The default quality-target policy: each decision's parameter is the stored calibration's choice, the dearer
    # one of a mix exactly for the prompts whose share key is below its share.
    from router.policy import Calibration, share_keys
    from router.registry.promotion import load_version

    loaded = load_version(Settings(home=home), 1)
    calibration = Calibration.from_dict(loaded.policy)
    assert calibration.folds == 10 and calibration.members == len(loaded.router.members) == 5  # the registered size
    choice = calibration.pick()
    rows = _query(home, "SELECT b.prompt_id, d.reward_param, d.policy FROM routing_decisions d "
                        "JOIN backlog b USING (query_id)")
    assert {r[2] for r in rows} == {"quality_target=1"}
    assert [r[1] for r in rows] == pytest.approx(list(choice.params_of([r[0] for r in rows])))
    if choice.mix_param is not None:
        dear = share_keys([r[0] for r in rows]) < choice.mix_share
        assert 0 < dear.mean() < 1


def test_second_night_changes_nothing_but_run_records(night: dict) -> None:
    home = night["home"]
    assert _query(home, "SELECT count(*) FROM training_runs")[0][0] == 1
    assert _query(home, "SELECT count(*) FROM nightly_runs")[0][0] == 2
    assert _query(home, "SELECT count(*) FROM routing_decisions")[0][0] == 953
    assert _query(home, "SELECT count(*) FROM promotions")[0][0] == 1
    assert _query(home, "SELECT count(*) FROM ingest_runs")[0][0] == 8  # 6 RouterBench files, logs, backlog
    second = _query(home, "SELECT trained, rows_new, routed FROM nightly_runs ORDER BY finished_at")[1]
    assert second == (False, 0, 0)
    first, again = night["runs"]
    assert again["seconds"] < first["seconds"] * 0.6, (first["seconds"], again["seconds"])


def test_reports_and_snapshots_are_written(night: dict) -> None:
    home = night["home"]
    reports = sorted((home / "reports").glob("20*-*-*"))
    assert reports, list((home / "reports").iterdir())
    text = (reports[-1] / "report.md").read_text()
    for section in ("## Ingest and validation", "## Training", "## Promotion", "## Backlog routing", "## Trend",
                    "## Doctor"):
        assert section in text
    assert (reports[-1] / "trend.png").stat().st_size > 1000
    metrics = json.loads((home / "reports" / "latest" / "metrics.json").read_text())
    assert {"attention", "attention_exp", "knn5", "knn10", "knn40", "mlp", "mf", "zero_router",
            "oracle"} <= set(metrics["routers"])
    snap = pl.read_parquet(home / "snapshots" / "latest_decisions.parquet")
    assert snap.height == 953 and snap["query_id"].n_unique() == 953


def test_analyst_queries_in_docs_run(night: dict) -> None:
    """Every ```sql block of docs/analysts.md runs on the store (or its snapshots) and returns rows."""
    home = night["home"]
    blocks = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "analysts.md").read_text(), flags=re.S)
    assert len(blocks) >= 6
    con = duckdb.connect(str(home / "router.duckdb"), read_only=True)
    cwd = os.getcwd()
    try:
        os.chdir(home.parent)
        (home.parent / ".router").mkdir(exist_ok=True)
        shutil.copytree(home / "snapshots", home.parent / ".router" / "snapshots", dirs_exist_ok=True)
        for sql in blocks:
            rows = con.execute(sql).fetchall()
            if "quarantine" not in sql:  # the shipped data has no bad rows
                assert rows, sql
    finally:
        os.chdir(cwd)
        con.close()
    realised = _query(home, "SELECT count(*), avg(realised_quality) FROM predicted_vs_realised")[0]
    assert realised[0] > 0 and 0 <= realised[1] <= 1


def test_budget_routing_respects_the_budget(night: dict, tmp_path: Path) -> None:
    """A new backlog (same prompts, new ids) routed under a budget: predicted spend stays within it."""
    home = tmp_path / "ws"
    shutil.copytree(night["home"], home, ignore=shutil.ignore_patterns("*.lock"))
    full = _query(home, "SELECT sum(predicted_cost_usd) FROM routing_decisions")[0][0]
    lines = (ROOT / "data" / "demo" / "backlog.jsonl").read_text().splitlines()
    new = tmp_path / "backlog2.jsonl"
    new.write_text("\n".join(json.dumps({**json.loads(x), "query_id": "b2-" + json.loads(x)["query_id"]})
                             for x in lines) + "\n")
    _routerctl(home, "ingest", "backlog", str(new))
    budget = full / 4
    out = _routerctl(home, "route", "--budget", f"{budget:.6f}").stdout
    spent = _query(home, "SELECT count(*), sum(predicted_cost_usd), max(budget_usd) FROM routing_decisions "
                         "WHERE query_id LIKE 'b2-%'")[0]
    assert spent[0] == 953 and spent[1] <= budget + 1e-9 and spent[2] == pytest.approx(budget)
    assert "within budget" in out
