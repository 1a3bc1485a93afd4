"""Evaluation report files and the ``latest`` copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import TwoModelRouter, embed_backlog
from router.evaluation import EvaluationResult, evaluate
from router.report import copy_to_latest, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result() -> EvaluationResult:
    rng = np.random.default_rng(0)
    n, m = 60, 4
    q_true = (rng.random((n, m)) < np.linspace(0.3, 0.9, m)).astype(float)
    c_true = rng.random((n, m)) * np.logspace(-5, -2, m)
    evals = np.array(["mmlu/high school", "gsm8k"] * (n // 2), dtype=object)
    q_hat = np.clip(0.5 * q_true + 0.25 + rng.normal(0, 0.1, (n, m)), 0, 1)
    preds = {"good": (q_hat, c_true, "linear"), "prior": (np.tile(np.linspace(0.3, 0.9, m), (n, 1)), c_true, "linear")}
    return evaluate(preds, q_true, c_true, evals, [f"model-{j}" for j in range(m)], dataset="toy", n_train=140)


def test_write_report_files(result: EvaluationResult, tmp_path: Path) -> None:
    out = tmp_path / "run"
    written = write_report(result, out)
    assert set(written) == {"metrics", "report", "plot:gsm8k", "plot:mmlu/high school", "plot:pooled"}
    for path in written.values():
        assert path.parent == out and path.is_file()
    for key in [*(f"plot:{ev}" for ev in result.eval_names), "plot:pooled"]:
        assert written[key].read_bytes().startswith(PNG_SIGNATURE)
    assert written["plot:mmlu/high school"].name == "eval_mmlu_high_school.png"

    metrics = json.loads(written["metrics"].read_text())
    assert metrics == result.metrics
    assert list(metrics["routers"]) == ["good", "prior", "zero_router", "oracle"]
    assert metrics["n_train"] == 140 and metrics["n_test"] == 60
    assert set(metrics["aiq_max_cost"]) == set(metrics["per_eval"]) == {"gsm8k", "mmlu/high school"}


def test_report_markdown_is_sorted_by_aiq_and_links_plots(result: EvaluationResult, tmp_path: Path) -> None:
    text = write_report(result, tmp_path)["report"].read_text()
    overall = text.split("## All eval sets (mean)")[1].split("## Pooled")[0]
    rows = [line for line in overall.splitlines() if line.startswith("| ") and not line.startswith("| router")]
    names = [row.split("|")[1].strip() for row in rows]
    expected = sorted(result.metrics["routers"], key=lambda k: -result.metrics["routers"][k]["aiq"])
    assert names == expected
    good = result.metrics["routers"]["good"]
    assert f"| good | linear | {good['aiq']:.4f} | {good['max_perf']:.4f} |" in text
    assert "](eval_gsm8k.png)" in text and "](eval_mmlu_high_school.png)" in text
    assert f"best single model: {result.metrics['best_single_model']['name']}" in text

    pooled = result.metrics["pooled"]
    section = text.split("## Pooled: the whole test split as one backlog")[1].split("## Per eval set")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| router")]
    assert [row.split("|")[1].strip() for row in rows] == sorted(pooled["routers"],
                                                                 key=lambda k: -pooled["routers"][k]["aiq"])
    zero = pooled["routers"]["zero_router"]
    assert f"| zero_router | — | {zero['aiq']:.4f} | {zero['max_perf']:.4f} |" in section
    assert f"{zero['cost_ratio_at_best_quality']:.3f}" in section
    assert f"Best single model: {pooled['best_single_model']['name']}" in section and "](pooled.png)" in section


def test_copy_to_latest_replaces_previous_copy(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    run1, run2 = root / "run1", root / "run2"
    run1.mkdir(parents=True)
    (run1 / "a.txt").write_text("one")
    run2.mkdir()
    (run2 / "b.txt").write_text("two")

    latest = copy_to_latest(run1, root)
    assert latest == root / "latest" and (latest / "a.txt").read_text() == "one"
    copy_to_latest(run2, root)
    assert sorted(p.name for p in latest.iterdir()) == ["b.txt"]
    assert (run1 / "a.txt").exists()  # the source is copied, not moved
    assert sorted(p.name for p in root.iterdir()) == ["latest", "run1", "run2"]  # no staging leftovers

    with pytest.raises(FileNotFoundError, match="missing"):
        copy_to_latest(root / "missing", root)
    assert (latest / "b.txt").read_text() == "two"


def test_snapshots_are_the_views_with_latest_decisions_computed_once(store, ingest, tmp_path: Path) -> None:
    """export_snapshots computes latest_decisions once into a temporary table that shadows the view while the
    files are written: every snapshot must still hold exactly what its view returns, the table must be gone
    afterwards (the views follow the stored tables again), and the next export must see what changed."""
    import polars as pl
    from polars.testing import assert_frame_equal

    from router.snapshots import SNAPSHOTS, export_snapshots
    from bench.store import execute  # the benches' synthetic rows of the real tables
    from router.storage import relation

    execute(store, "synthetic_decisions", {"rows": 300})  # 100 queries, 3 versions' decisions each
    execute(store, "synthetic_backlog", {"first": 0, "queries": 90})  # 10 of them not in the backlog yet
    logs = tmp_path / "realised.jsonl"  # outcomes of two chosen models, so predicted_vs_realised has rows
    logs.write_text("\n".join(json.dumps({"request_id": f"q{k}", "model": f"model-{(3 * k + 2) % 11}",
                                          "prompt": f"p{k}", "quality": 1.0, "cost_usd": 0.01,
                                          "ts": "2026-01-02T00:00:00Z"}) for k in (4, 95)))
    assert ingest("logs", logs).rows_new == 2

    def utc(frame: pl.DataFrame) -> pl.DataFrame:  # Parquet says "UTC" where the session says "Etc/UTC"
        return frame.with_columns(pl.col(pl.Datetime(time_zone="*")).dt.convert_time_zone("UTC"))

    def check_export(out: Path) -> dict[str, pl.DataFrame]:
        written = export_snapshots(store, out)
        assert set(written) == set(SNAPSHOTS)
        files = {name: pl.read_parquet(path) for name, path in written.items()}
        for name in SNAPSHOTS:  # the views, queried after the export, read the stored tables
            direct = relation(store, f"snapshots/{name}").pl()
            keys = direct.columns
            assert files[name].columns == keys, name
            assert_frame_equal(utc(files[name]).sort(keys), utc(direct).sort(keys), check_exact=False)
        return files

    first = check_export(tmp_path / "s1")
    assert (first["routing_decisions"].height, first["latest_decisions"].height) == (300, 90)
    assert first["predicted_vs_realised"]["query_id"].to_list() == ["q4"]
    assert first["task_mix"]["queries"].sum() == 90

    execute(store, "synthetic_backlog", {"first": 90, "queries": 10})
    assert relation(store, "snapshots/latest_decisions").pl().height == 100  # no table left shadowing the view
    second = check_export(tmp_path / "s2")
    assert second["latest_decisions"].height == 100 and second["task_mix"]["queries"].sum() == 100
    assert second["predicted_vs_realised"]["query_id"].sort().to_list() == ["q4", "q95"]
    latest = second["latest_decisions"].filter(pl.col("query_id") == "q4").row(0, named=True)
    assert (latest["model_version"], latest["chosen_model"]) == ("v2", "model-3")  # the last of its decisions


def test_a_resumed_night_reports_and_trends_what_its_stopped_run_routed(store, ingest, files, tmp_path: Path) -> None:
    """Run a routes ten queries and stops before its report; run b (resumed) routes two new ones and reports the
    night's twelve, naming run a; run c, a re-run with nothing left, reports them again and the night's trend
    counts them once, with the AIQ run b recorded."""
    from dataclasses import asdict
    from datetime import UTC, datetime

    from router.night_report import write_night_report
    from router.routing import route_backlog
    from router.storage import relation

    def run(flow_run_id: str, train: dict) -> str:
        summary = route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc", reward_param=0.05,
                                flow_run_id=flow_run_id)
        routing = {**asdict(summary), "policy": {"kind": "lambda"}, "policy_key": summary.policy}
        now = datetime.now(UTC).replace(tzinfo=None)
        out = write_night_report(store, tmp_path / "reports", flow_run_id=flow_run_id, started=now, night=now.date(),
                                 ingest={}, validation={}, embed={}, train=train, promotion={"skipped": True},
                                 routing=routing)
        return (out / "report.md").read_text()

    ingest("backlog", files.backlog(records=[files.backlog_record(i) for i in range(10)]))
    embed_backlog(store, hard=["q-0", "q-1"])
    stopped = route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc", reward_param=0.05,
                            flow_run_id="night-a")
    assert stopped.routed == 10  # ... and the run stops here, before its report
    ingest("backlog", files.backlog("more.jsonl", records=[files.backlog_record(i) for i in range(10, 12)]))
    embed_backlog(store, hard=["q-0", "q-1"])
    resumed = run("night-b", {"skipped": False, "attention_aiq": 0.7, "baseline_aiq": 0.6})
    assert resumed.splitlines()[2].startswith("Routed 12 queries for a predicted $0.0300")
    assert "- routed now: 2 queries" in resumed
    assert "- routed earlier tonight by flow run `night-a` (stopped before its report): 10 queries, " \
           "predicted spend $0.0280" in resumed
    rerun = run("night-c", {"skipped": True})
    assert "- routed now: 0 queries, predicted spend $0.0000, mean predicted quality –" in rerun
    assert rerun.splitlines()[2].startswith("Routed 12 queries")
    assert "flow run `night-b`: 2 queries" in rerun and "flow run `night-a` (stopped before its report)" in rerun
    rows = dict(store.execute("SELECT flow_run_id, routed FROM nightly_runs").fetchall())
    assert rows == {"night-b": 12, "night-c": 0}
    trend = relation(store, "nightly/trend").pl()
    assert trend.select("routed", "attention_aiq", "baseline_aiq").rows() == [(12, 0.7, 0.6)]
    assert trend["predicted_spend_usd"][0] == pytest.approx(0.03)


def test_the_analysts_guide_names_every_snapshot() -> None:
    """docs/analysts.md lists the snapshot files analysts can read while a run writes: every one there is."""
    from router.settings import PROJECT_ROOT
    from router.snapshots import SNAPSHOTS

    guide = (PROJECT_ROOT / "docs" / "analysts.md").read_text()
    listed = re.sub(r"\([^)]*\)", "", guide.split("The files: ", 1)[1].split(". Query them", 1)[0])
    assert sorted(re.findall(r"`(\w+)`", listed)) == sorted(SNAPSHOTS)
