"""Drift checks (router.drift): the statistics on synthetic data, the store's I/O, the night's step (a breach on unchanged
training inputs retrains nothing and says why), `routerctl drift`, the doctor's warning and the report's section."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router import drift, promotions
from router.embeddings import store_vectors
from router.representation import Representation
from router.storage import execute

DIM = 16


# ------------------------------------------------------------------------------------------- the statistics
def test_mmd_test_keeps_same_distribution_and_flags_a_shift() -> None:
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(150, DIM)), rng.normal(size=(150, DIM))
    same = drift.mmd_test(X, Y, permutations=200, seed=7)
    shifted = drift.mmd_test(X, Y + 0.5, permutations=200, seed=7)
    assert same["p_value"] > 0.05, same
    assert shifted["p_value"] == pytest.approx(1 / 201), shifted  # no permutation reaches the observed MMD²
    assert shifted["mmd2"] > 10 * abs(same["mmd2"])
    assert drift.mmd_test(X, Y, permutations=200, seed=7) == same  # seeded: the same p-value every night


def test_total_variation_and_calibration_match_their_definitions() -> None:
    assert drift.total_variation(["a", "a", "b", "b"], ["a", "a", "b", "b"]) == 0.0
    assert drift.total_variation(["a"] * 3, ["b"] * 5) == 1.0
    # a: 3/4 vs 1/4, b: 1/4 vs 3/4 → ½(0.5 + 0.5)
    assert drift.total_variation(["a", "a", "a", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    stats = drift.calibration(np.array([0.9, 0.1]), np.array([0.5, 0.5]), np.array([1.0, 1.0]),
                              np.array([3.0, 1.0]))
    assert stats == {"quality_error": pytest.approx(0.4), "cost_ratio": pytest.approx(2.0)}


def test_outcome_checks_per_model(settings) -> None:
    settings = settings.model_copy(update={"drift_min_outcomes": 5})
    n = 30
    rng = np.random.default_rng(0)
    outcomes = {"model": np.array(["m1"] * 20 + ["m2"] * 7 + ["other"] * 3, dtype=object),
                "quality": rng.uniform(size=n), "cost_usd": np.full(n, 0.01), "task": np.full(n, "", dtype=object),
                "n_chars": np.full(n, 10), "X": rng.normal(size=(n, DIM))}

    def predict(X, n_chars, tasks):  # m1: well calibrated, m2: quality off by 0.5 and cost 3× too low
        q = np.column_stack([outcomes["quality"], np.clip(outcomes["quality"] + 0.5, 0, 1.5)])
        return q, np.column_stack([np.full(len(X), 0.01), np.full(len(X), 0.01 / 3)])

    checks = {c.name: c for c in drift.outcome_checks(outcomes, predict, ["m1", "m2"], settings)}
    assert set(checks) == {"quality:m1", "cost_ratio:m1", "quality:m2", "cost_ratio:m2"}  # "other": not pooled
    assert checks["quality:m1"].statistic == pytest.approx(0.0) and not checks["quality:m1"].breached
    assert checks["quality:m2"].statistic == pytest.approx(0.5) and checks["quality:m2"].breached
    assert checks["cost_ratio:m2"].detail["ratio"] == pytest.approx(3.0, rel=1e-3) and checks["cost_ratio:m2"].breached
    assert checks["cost_ratio:m1"].statistic == pytest.approx(1.0) and not checks["cost_ratio:m1"].breached
    few = drift.outcome_checks(outcomes, predict, ["m1", "m2"], settings.model_copy(update={"drift_min_outcomes": 10}))
    skipped = [c for c in few if c.statistic is None]
    assert {c.name for c in skipped} == {"quality:m2", "cost_ratio:m2"} and not any(c.breached for c in skipped)


def test_a_free_model_s_cost_ratio_is_finite_and_breaches_only_when_its_cost_is_mispredicted(settings) -> None:
    """A model that costs nothing (local, free tier) logs cost 0: predicted at the cost head's floor it is not a
    breach (it was ``inf`` every night); predicted at a real price it is one, with a finite statistic."""
    n = 30
    outcomes = {"model": np.array(["free"] * n, dtype=object), "quality": np.full(n, 0.5), "cost_usd": np.zeros(n),
                "task": np.full(n, "", dtype=object), "n_chars": np.full(n, 10), "X": np.zeros((n, DIM))}
    found = {}
    for predicted in (1e-7, 1e-3):  # the attention router's cost floor; a price the model no longer has
        def predict(X, n_chars, tasks, c=predicted):
            return np.full((len(X), 1), 0.5), np.full((len(X), 1), c)

        (check,) = [c for c in drift.outcome_checks(outcomes, predict, ["free"], settings) if c.name == "cost_ratio:free"]
        assert math.isfinite(check.statistic) and 0 < check.detail["ratio"] <= 1
        json.dumps(check.detail, allow_nan=False)
        found[predicted] = check
    assert found[1e-7].statistic < 1.1 and not found[1e-7].breached
    assert found[1e-3].statistic > 100 and found[1e-3].breached


# ---------------------------------------------------------------------------------------------- the store
def _embed(con, settings, shift: dict[str, float]) -> None:
    """Synthetic vectors for every stored prompt: N(0, 1), plus ``shift[source]`` on every coordinate."""
    rows = con.table("prompts").pl().sort("prompt_id")
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(rows.height, DIM)) + np.array([shift.get(s, 0.0) for s in rows["source"]])[:, None]
    have = set(con.sql("SELECT prompt_id FROM embeddings").pl()["prompt_id"])
    new = np.array([pid not in have for pid in rows["prompt_id"]], dtype=bool)  # stored vectors are kept
    key = Representation.from_settings(settings).key  # current vectors: the embed step leaves them alone
    store_vectors(con, settings.encoder, rows["prompt_id"].filter(new), vectors[new].astype(np.float32), key,
                  [None] * int(new.sum()))


def _champion(con, version: str = "1") -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    execute(con, "nightly/insert_training_run", {
        "run_id": f"run-{version}", "data_key": f"key{version}", "mlflow_run_id": None, "model_version": version,
        "attention_aiq": 0.5, "best_baseline": "knn", "baseline_aiq": 0.4, "report_dir": "", "flow_run_id": None,
        "now": now})
    execute(con, "routing/insert_promotion", {
        "now": now, "registered_model": "xattn-router", "kind": "gate", "challenger": version, "champion_before": None,
        "champion_after": version, "challenger_aiq": 0.5, "champion_aiq": None, "baseline_aiq": 0.4,
        "baseline_se": None, "promoted": True, "reason": "first", "flow_run_id": None})


@pytest.fixture
def night_store(store, settings, ingest, files):
    """A store with 120 RouterBench training prompts (tasks math/code), a champion trained on them, then tonight's
    logs; returns a function building tonight (logs' tasks and the shift of their vectors) → its ``since``."""
    assert ingest("routerbench", files.routerbench("bench_train.csv", n=120)).status == "ingested"
    _champion(store)

    def tonight(tasks: list[str], shift: float) -> datetime:
        since = datetime.now(UTC).replace(tzinfo=None)
        records = [files.log_record(i, prompt=f"Tonight's request {i}", task=t) for i, t in enumerate(tasks)]
        assert ingest("logs", files.logs("tonight.jsonl", records=records)).status == "ingested"
        _embed(store, settings, {"logs": shift})
        return since

    return tonight


def test_same_distribution_passes_and_a_shift_is_flagged(night_store, store, settings) -> None:
    since = night_store(["math", "code"] * 40, shift=0.0)
    checks, version = drift.prompt_checks(store, settings, since)
    by = {c.name: c for c in checks}
    assert version == "1"
    assert by["embedding"].detail["new"] == 80 and by["embedding"].detail["training"] == 120
    assert by["embedding"].statistic > settings.drift_embedding_p and not by["embedding"].breached
    assert by["task_mix"].statistic < settings.drift_task_tvd and not by["task_mix"].breached

    store.execute("DELETE FROM embeddings WHERE prompt_id IN (SELECT prompt_id FROM prompts WHERE source = 'logs')")
    _embed(store, settings, {"logs": 1.0})  # the same prompts, moved in embedding space
    shifted = {c.name: c for c in drift.prompt_checks(store, settings, since)[0]}
    assert shifted["embedding"].statistic < settings.drift_embedding_p and shifted["embedding"].breached


def test_task_mix_flags_new_tasks_and_checks_are_skipped_without_champion(night_store, store, settings) -> None:
    since = night_store(["poetry"] * 30 + ["math"] * 10, shift=0.0)
    by = {c.name: c for c in drift.prompt_checks(store, settings, since)[0]}
    assert by["task_mix"].statistic == pytest.approx(0.75) and by["task_mix"].breached  # poetry: ¾ vs 0
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    none_new = drift.prompt_checks(store, settings, later)[0]
    assert all(c.statistic is None and not c.breached for c in none_new)
    assert none_new[0].detail["skipped"] == "no new prompts tonight"
    store.execute("DELETE FROM promotions")
    no_champion = drift.prompt_checks(store, settings, since)[0]
    assert [c.detail["skipped"] for c in no_champion] == ["no champion trained in this store yet"] * 2
    # a champion promoted by hand (`routerctl models promote`) moves the registry's alias and writes no promotions
    # row: the nightly passes the alias, and the checks compare with that version's training prompts
    by_alias, version = drift.prompt_checks(store, settings, since, champion_version=1)
    assert version == "1" and {c.name: c.statistic for c in by_alias} == {c.name: c.statistic for c in by.values()}
    assert drift.prompt_checks(store, settings, since, champion_version=7)[1] is None  # not trained in this store


def test_an_onboarded_champion_is_checked_against_the_training_prompts_of_its_base(night_store, store, settings
                                                                                   ) -> None:
    """The onboard step promotes a version with no training run of its own (v1 + a new model = v2, then v2 + another
    = v3): the prompt checks compare with v1's training prompts and name the serving champion, whose outcome checks
    then run."""
    since = night_store(["poetry"] * 30 + ["math"] * 10, shift=1.0)
    before = {c.name: (c.statistic, c.breached) for c in drift.prompt_checks(store, settings, since)[0]}
    for challenger, base in (("2", "1"), ("3", "2")):
        execute(store, "routing/insert_promotion", {
            "now": datetime.now(UTC).replace(tzinfo=None), "registered_model": "xattn-router", "kind": "gate",
            "challenger": challenger, "champion_before": base, "champion_after": challenger, "challenger_aiq": 0.5,
            "champion_aiq": 0.5, "baseline_aiq": 0.4, "baseline_se": None, "promoted": True, "reason": "onboarded",
            "flow_run_id": None})
        checks, version = drift.prompt_checks(store, settings, since)
        assert version == challenger
        assert {c.name: (c.statistic, c.breached) for c in checks} == before  # v1's training prompts
        assert before["embedding"][1] and before["task_mix"][1]
        assert {c.detail["champion"] for c in checks} == {challenger}
    # a manual promotion row is no onboarding: the line is followed through gate rows only. Without that rule v3's
    # row from v9 (trained later than v1) would send the check to v9's training prompts
    later = datetime.now(UTC).replace(tzinfo=None)
    execute(store, "nightly/insert_training_run", {
        "run_id": "run-9", "data_key": "key9", "mlflow_run_id": None, "model_version": "9", "attention_aiq": 0.5,
        "best_baseline": "knn", "baseline_aiq": 0.4, "report_dir": "", "flow_run_id": None, "now": later})
    promotions.record_move(store, "xattn-router", "manual", 9, 3, "routerctl models promote: back to v3")
    v1_trained = store.execute("SELECT finished_at FROM training_runs WHERE model_version = '1'").fetchall()[0][0]
    assert execute(store, "drift/champion_training", {"version": "3"}) == [("3", v1_trained)]
    # a rejected onboarding leaves the champion (champion_after = the base): nothing changes
    execute(store, "routing/insert_promotion", {
        "now": datetime.now(UTC).replace(tzinfo=None), "registered_model": "xattn-router", "kind": "gate", "challenger": "4",
        "champion_before": "3", "champion_after": "3", "challenger_aiq": 0.3, "champion_aiq": 0.5,
        "baseline_aiq": 0.4, "baseline_se": None, "promoted": False, "reason": "rejected", "flow_run_id": None})
    assert drift.prompt_checks(store, settings, since)[1] == "3"


def test_recorded_checks_reach_cli_doctor_and_report(night_store, store, settings, cli, tmp_path: Path) -> None:
    from router.doctor import WARNING, run_checks
    from router.night_report import write_night_report

    since = night_store(["poetry"] * 40, shift=1.0)
    checks, _ = drift.prompt_checks(store, settings, since)
    result = drift.DriftResult("2026-01-02", "flow-1", checks)
    drift.record(store, result)
    drift.record(store, result)  # a re-run replaces its rows
    assert store.table("drift_checks").pl().height == 2
    store.close()

    out = cli("drift", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["night"] == "2026-01-02" and data["breached"] is True
    emb = next(c for c in data["checks"] if c["name"] == "embedding")
    assert emb["breached"] and emb["statistic"] < emb["threshold"] == settings.drift_embedding_p
    assert set(data["checks"][0]) >= {"name", "statistic", "threshold", "breached"}
    table = cli("drift")
    assert table.exit_code == 0 and "BREACHED (embedding, task_mix)" in table.output, table.output

    report = run_checks(settings, check_registry=False)
    check = next(c for c in report.checks if c.name == "drift")
    assert check.status == WARNING and "embedding" in check.detail and report.ok  # a warning never fails
    assert cli("doctor", "--no-registry").exit_code == 0

    from router.storage import open_store

    with open_store(settings) as con:
        out_dir = write_night_report(
            con, tmp_path / "reports", flow_run_id="flow-1", started=since, night=since.date(), ingest={},
            validation={}, embed={}, train={"skipped": True}, promotion={"skipped": True},
            routing={"model_version": None}, drift=drift.summary(result))
        marked = con.sql("SELECT drift_breached FROM nightly_runs").fetchall()
    text = (out_dir / "report.md").read_text()
    assert "**Drift: embedding, task_mix breached**" in text and "![drift](drift.png)" in text
    assert (out_dir / "drift.png").stat().st_size > 1000
    assert marked == [(True,)]


def test_the_night_s_step_records_its_checks(night_store, store, settings) -> None:
    """The step on a store whose champion the (empty) registry cannot load: the prompt checks run, the outcome
    checks are recorded as skipped with the reason, and the night's summary says what fired."""
    from router import nightly

    since = night_store(["poetry"] * 30, shift=1.0)
    store.close()
    night = nightly.Night(settings, "flow-step", since)
    result = nightly.run_step(nightly.STEP["drift"], night)
    assert result["breached"] and result["fired"] == ["embedding", "task_mix"] and night.results["drift"] is result
    with drift_store(settings) as con:
        stored = drift.latest(con)
    assert [c.name for c in stored.checks] == ["calibration", "embedding", "task_mix"]
    calibration = stored.checks[0]
    assert calibration.statistic is None and not calibration.breached
    assert "champion v1 could not be loaded" in calibration.detail["skipped"]


def drift_store(settings):
    from router.storage import open_store

    return open_store(settings, read_only=True)


def test_drift_cli_before_any_night_checked(settings, cli, store) -> None:
    store.close()
    out = cli("drift", "--json")
    assert out.exit_code == 0 and json.loads(out.output) == {"night": None, "breached": False, "checks": []}


def test_a_breach_on_unchanged_training_inputs_retrains_nothing_and_says_why(settings, store, tmp_path) -> None:
    """The fit is seeded and deterministic: a retrain on the inputs of a finished run would reproduce its version.
    With the inputs changed the step trains whether or not drift breached."""
    from router import nightly
    from router.dataset import snapshot
    from router.night_report import write_night_report
    from router.pipeline import NotEnoughData
    from router.storage import open_store

    key = nightly.data_key(settings, snapshot(store).ingest_runs)
    execute(store, "nightly/insert_training_run", {
        "run_id": "r0", "data_key": key, "mlflow_run_id": None, "model_version": "1", "attention_aiq": 0.5,
        "best_baseline": "knn", "baseline_aiq": 0.4, "report_dir": "", "flow_run_id": None,
        "now": datetime.now(UTC).replace(tzinfo=None)})
    store.close()
    night = nightly.Night(settings, "flow-x", datetime.now(UTC).replace(tzinfo=None))
    night.results["drift"] = {"breached": False}
    quiet = nightly.STEP["train"].run(night)
    assert quiet.skipped and quiet.note is None and "note" not in quiet.summary()
    night.results["drift"] = {"breached": True}
    drifted = nightly.STEP["train"].run(night)
    assert drifted.skipped and drifted.data_key == key and drifted.previous["run_id"] == "r0"
    assert "drift checks breached, but the training inputs are those of run `r0` (v1)" in drifted.note
    with open_store(settings) as con:
        out = write_night_report(con, tmp_path / "reports", flow_run_id="flow-x", started=night.started,
                                 night=night.started.date(), ingest={}, validation={}, embed={},
                                 train=drifted.summary(), promotion={"skipped": True},
                                 routing={"model_version": None}, drift={"breached": True, "checks": []})
        con.execute("DELETE FROM training_runs")  # inputs no finished run had: the step trains (an empty store)
    assert drifted.note in (out / "report.md").read_text()
    with pytest.raises(NotEnoughData):
        nightly.STEP["train"].run(night)
    names = [s.name for s in nightly.STEPS]
    assert names.index("embed") < names.index("drift") < names.index("train")


def test_outcome_checks_take_a_fitted_router_s_predict(settings) -> None:
    """The step hands the champion's ``router.predict`` over: a real router's signature and output shapes."""
    from router.routers import ROUTERS
    from router.routers.base import RoutingData

    rng = np.random.default_rng(5)
    n, models = 60, ["m1", "m2"]
    X = rng.normal(size=(n, DIM)).astype(np.float32)
    quality = rng.uniform(size=(n, 2)).astype(np.float32)
    cost = np.tile(np.array([[0.01, 0.02]], dtype=np.float32), (n, 1))
    data = RoutingData(X=X, quality=quality, cost=cost, prompt_chars=np.full(n, 50), models=models,
                       eval_names=np.array(["t"] * n, dtype=object), prompt_ids=[str(i) for i in range(n)])
    router = ROUTERS["knn5"]().fit(data)
    outcomes = {"model": np.array(["m2"] * n, dtype=object), "quality": quality[:, 1], "cost_usd": cost[:, 1] * 4,
                "task": np.array([""] * n, dtype=object), "n_chars": np.full(n, 50), "X": X}
    checks = {c.name: c for c in drift.outcome_checks(outcomes, router.predict, models, settings)}
    assert checks["cost_ratio:m2"].detail["ratio"] == pytest.approx(4.0, rel=1e-3)
    assert checks["cost_ratio:m2"].breached
    q_hat = router.predict(X, np.full(n, 50), outcomes["task"])[0][:, 1]
    assert checks["quality:m2"].statistic == pytest.approx(float(np.mean(np.abs(q_hat - quality[:, 1]))), rel=1e-5)


# --------------------------------------------------------------------- real prompts, the shipped encoder (slow)
ROOT = Path(__file__).resolve().parents[1]
PER_SIDE = 150


def _train_rows(path: Path) -> Path:
    """150 RouterBench subset train rows (seeded sample across its three evals) as one train file."""
    found = sorted((ROOT / "data/routerbench_subset").glob("*_train.csv"))
    frames = [pl.read_csv(p, infer_schema_length=0) for p in found]
    rows = pl.concat(frames, how="diagonal").sample(PER_SIDE, seed=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.write_csv(path)
    return path


def _log_file(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.slow
def test_real_prompts_shipped_test_logs_pass_another_benchmark_is_flagged(settings, store, ingest, tmp_path,
                                                                         capsys) -> None:
    from router.embeddings import embed_missing
    from router.night_report import write_night_report

    assert ingest("routerbench", _train_rows(tmp_path / "in" / "bench_train.csv")).status == "ingested"
    _champion(store)
    nights = {}
    demo = pl.read_ndjson(ROOT / "data/demo/logs.jsonl").sample(PER_SIDE, seed=12).to_dicts()
    other = pl.read_csv(ROOT / "data/llmrouter_9models/llmrouter_test.csv").sample(PER_SIDE, seed=13)
    model = other.columns[3]
    foreign = [{"request_id": r["sample_id"], "ts": "2026-11-02T12:00:00Z", "prompt": r["prompt"], "model": model,
                "quality": r[model], "cost_usd": r[f"{model}|total_cost"], "task": r["eval_name"]}
               for r in other.iter_rows(named=True)]
    for name, records in (("shipped", demo), ("other", foreign)):
        since = datetime.now(UTC).replace(tzinfo=None)
        assert ingest("logs", _log_file(tmp_path / "in" / f"{name}.jsonl", records)).status == "ingested"
        embed_missing(store, settings)
        checks, _ = drift.prompt_checks(store, settings, since)
        nights[name] = (since, {c.name: c for c in checks})
    shipped, flagged = nights["shipped"][1]["embedding"], nights["other"][1]["embedding"]
    with capsys.disabled():
        print(f"\nembedding p-value: shipped test logs {shipped.statistic:.4f} (MMD² {shipped.detail['mmd2']:.5f}), "
              f"llmrouter logs {flagged.statistic:.4f} (MMD² {flagged.detail['mmd2']:.5f}); task_mix TVD "
              f"{nights['shipped'][1]['task_mix'].statistic:.3f} / {nights['other'][1]['task_mix'].statistic:.3f}")
    assert shipped.detail["new"] == shipped.detail["training"] == PER_SIDE
    assert not shipped.breached and shipped.statistic >= settings.drift_embedding_p
    assert flagged.breached and flagged.statistic < settings.drift_embedding_p
    since, checks = nights["other"]
    result = drift.DriftResult(since.date().isoformat(), "night-other", list(checks.values()))
    drift.record(store, result)
    out = write_night_report(store, tmp_path / "reports", flow_run_id="night-other", started=since,
                             night=since.date(), ingest={}, validation={}, embed={}, train={"skipped": True},
                             promotion={"skipped": True}, routing={"model_version": None},
                             drift=drift.summary(result))
    text = (out / "report.md").read_text()
    assert "**Drift: embedding" in text and "| embedding |" in text and "| **yes** |" in text
