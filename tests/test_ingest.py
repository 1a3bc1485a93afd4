"""Ingest end to end: the shipped RouterBench subset, idempotence, splits, model pools, schemas, bad rows,
pickle gating, transactions and Great Expectations Data Docs."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from conftest import MODELS, table
from router import ingest as ingest_mod
from router import validation
from router.ingest import IngestError, discover, ingest_file, split_for
from router.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "data" / "routerbench_subset"
#: Data rows per shipped file (RouterBench 0-shot; 11 models each).
SHIPPED_ROWS = {
    "arc_challenge_test.csv": 445, "arc_challenge_train.csv": 1039, "mbpp_test.csv": 128,
    "mbpp_train.csv": 299, "winograde_test.csv": 380, "winograde_train.csv": 887,
}
N_MODELS = 11


def _shipped_expected() -> pl.DataFrame:
    """Per model: number of scored cells, sum of scores and of costs, straight from the CSVs."""
    parts = []
    for name in SHIPPED_ROWS:
        df = pl.read_csv(SHIPPED / name, infer_schema_length=None)
        models = [c[: -len("|total_cost")] for c in df.columns if c.endswith("|total_cost")]
        parts.append(pl.concat([
            df.select(pl.lit(m).alias("model"), pl.col(m).cast(pl.Float64).alias("quality"),
                      pl.col(m + "|total_cost").cast(pl.Float64).alias("cost_usd")) for m in models
        ]))
    return (pl.concat(parts).group_by("model")
            .agg(pl.len().alias("n"), pl.col("quality").sum(), pl.col("cost_usd").sum()).sort("model"))


def test_shipped_data_counts_values_and_idempotence(store, settings, counts, reconciled, tmp_path) -> None:
    found, notes = discover([SHIPPED], "routerbench")
    assert sorted(p.name for p in found) == sorted(SHIPPED_ROWS)
    assert notes == []
    for path in found:
        result = ingest_file(store, "routerbench", path, settings)
        rows = SHIPPED_ROWS[path.name]
        assert (result.source_rows, result.rows_in, result.rows_ok, result.rows_new, result.rows_quarantined) == (
            rows, rows * N_MODELS, rows * N_MODELS, rows * N_MODELS, 0)
        assert len(result.models) == N_MODELS
        assert reconciled(result).height == 0

    total = sum(SHIPPED_ROWS.values())
    assert total == 3178
    first = counts()
    # 3,178 rows; two prompt texts occur twice (under different sample ids), so 3,176 distinct prompts.
    expected = {"prompts": 3176, "outcomes": total * N_MODELS, "models": N_MODELS, "backlog": 0,
                "ingest_runs": 6, "quarantine": 0, "embeddings": 0}
    assert {k: first[k] for k in expected} == expected

    outcomes = table(store, "outcomes")
    # Values survive the unpivot: per-model counts and sums equal the CSVs'.
    stored = (outcomes.group_by("model").agg(pl.len().alias("n"), pl.col("quality").sum(), pl.col("cost_usd").sum())
              .sort("model"))
    expected = _shipped_expected()
    assert stored["model"].to_list() == expected["model"].to_list()
    assert stored["n"].to_list() == expected["n"].to_list()
    assert stored["quality"].to_list() == pytest.approx(expected["quality"].to_list())
    assert stored["cost_usd"].to_list() == pytest.approx(expected["cost_usd"].to_list(), rel=1e-9)
    # Split from the file names; natural key sample_id#row index; task = eval_name.
    per_split = outcomes.group_by("split").agg(pl.col("sample_key").n_unique()).sort("split")
    assert per_split.rows() == [("test", 445 + 128 + 380), ("train", 1039 + 299 + 887)]
    assert set(outcomes["task"].unique()) == {"arc-challenge", "mbpp", "winogrande"}
    row = outcomes.filter((pl.col("sample_key") == "mbpp.dev.1#20693") & (pl.col("model") == "gpt-4-1106-preview"))
    assert row.height == 1 and row["quality"][0] == 0.0 and row["split"][0] == "test"
    prompt = table(store, "prompts").filter(pl.col("prompt_id") == row["prompt_id"][0])
    assert prompt["text"][0] == "Write a python function to identify non-prime numbers."  # "['...']" unwrapped

    # Twice: every file is skipped by its sha256, nothing changes.
    for path in found:
        again = ingest_file(store, "routerbench", path, settings)
        assert again.status == "skipped" and "already ingested" in again.message
    assert counts() == first

    # The same rows in other bytes (gzip'd, renamed): read, all ok, none new.
    copy = tmp_path / "mbpp_again_test.csv.gz"
    copy.write_bytes(gzip.compress((SHIPPED / "mbpp_test.csv").read_bytes()))
    result = ingest_file(store, "routerbench", copy, settings)
    assert (result.rows_in, result.rows_ok, result.rows_new, result.rows_quarantined) == (1408, 1408, 0, 0)
    after = counts()
    assert after == {**first, "ingest_runs": 7}


def test_appending_a_file_adds_only_its_new_rows(files, ingest, counts, reconciled) -> None:
    first = reconciled(ingest("logs", files.logs("day1.jsonl", n=3)))
    assert first.height == 0
    before = counts()
    # Day 2's export repeats day 1's three requests and adds two.
    result = ingest("logs", files.logs("day2.jsonl", n=5))
    reconciled(result)
    assert (result.rows_in, result.rows_ok, result.rows_new, result.rows_quarantined) == (5, 5, 2, 0)
    assert counts() == {**before, "outcomes": 5, "prompts": 5, "ingest_runs": 2}


def test_split_from_file_name_else_seeded_70_30_per_eval(files, ingest, store) -> None:
    rows = files.routerbench_rows(n=20, evals=("math", "code"))  # 10 rows per eval
    assert ingest("routerbench", files.write("bench_test_v1.csv", rows[:4])).rows_ok == 12
    assert ingest("routerbench", files.write("other_train.parquet", rows[4:8])).rows_ok == 12
    unsplit = ingest("routerbench", files.write("bench.csv", rows[8:]))
    assert unsplit.rows_ok == 36
    outcomes = table(store, "outcomes").filter(pl.col("model") == MODELS[0])
    by_key = dict(zip(outcomes["sample_key"], outcomes["split"], strict=True))
    assert {by_key[f"{r['sample_id']}#{r['']}"] for r in rows[:4]} == {"test"}
    assert {by_key[f"{r['sample_id']}#{r['']}"] for r in rows[4:8]} == {"train"}
    # 12 rows without a split in the name: 6 math, 6 code → per eval round(0.7 * 6) = 4 train, 2 test.
    rest = outcomes.filter(pl.col("ingest_run_id") == unsplit.run_id)
    assert rest.group_by("task", "split").len().sort("task", "split").rows() == [
        ("code", "test", 2), ("code", "train", 4), ("math", "test", 2), ("math", "train", 4)]
    # Seeded: the same rows always get the same split, and every model of a row shares it.
    again = split_for(Path("bench.csv"), pl.DataFrame({"eval_name": [r["eval_name"] for r in rows[8:]]}))
    assert [by_key[f"{r['sample_id']}#{r['']}"] for r in rows[8:]] == again.to_list()
    assert table(store, "outcomes").group_by("sample_key").agg(pl.col("split").n_unique())["split"].max() == 1


def test_any_model_pool_is_discovered_from_the_columns(files, ingest, store, reconciled) -> None:
    pool = ("zeta-1", "acme/omega-xl", "tiny model")
    result = ingest("routerbench", files.routerbench("pool_train.csv", n=5, models=pool))
    reconciled(result)
    assert result.models == list(pool)
    assert (result.rows_in, result.rows_ok) == (15, 15)
    assert sorted(table(store, "models")["name"]) == sorted(pool)
    outcomes = table(store, "outcomes")
    # row i, model j: score (i + j) % 2, cost (j + 1) / 1000
    got = outcomes.filter(pl.col("sample_key") == "code.3#3").sort("model")
    assert dict(zip(got["model"], got["quality"], strict=True)) == {"zeta-1": 1.0, "acme/omega-xl": 0.0,
                                                                     "tiny model": 1.0}
    assert dict(zip(got["model"], got["cost_usd"], strict=True)) == {"zeta-1": 0.001, "acme/omega-xl": 0.002,
                                                                      "tiny model": 0.003}
    # A second file with another pool adds its models; the first pool stays.
    ingest("routerbench", files.routerbench("pool2_train.csv", n=2, models=("zeta-1", "new-kid"), start=10))
    assert sorted(table(store, "models")["name"]) == sorted([*pool, "new-kid"])


def test_wrong_schema_names_file_and_columns_and_changes_nothing(files, ingest, rejected) -> None:
    ingest("logs", files.logs("good.jsonl", n=2))  # a non-empty store, so "unchanged" means something
    rows = [{k: v for k, v in r.items() if k != "prompt"} for r in files.routerbench_rows(n=3)]
    rejected("routerbench", files.write("noprompt.csv", rows), "missing columns ['prompt']")
    logs = [{**{k: v for k, v in files.log_record(i).items() if k != "cost_usd"}, "user": "x"} for i in range(3)]
    rejected("logs", files.write("badlogs.jsonl", logs), "missing columns ['cost_usd']", "unexpected columns ['user']")


def test_bad_rows_are_quarantined_and_good_rows_stored(files, ingest, store, reconciled) -> None:
    rows = files.routerbench_rows(n=4, models=("m1", "m2"))
    rows[1]["m1"] = 1.7  # score outside [0, 1]: only (row 2, m1) is bad
    rows[2]["prompt"] = "['']"  # empty prompt: both models of row 3
    rows[3]["m2|total_cost"] = -0.5  # negative cost: (row 4, m2)
    result = ingest("routerbench", files.write("mixed_train.csv", rows))
    bad = reconciled(result)
    assert (result.rows_in, result.rows_ok, result.rows_quarantined) == (8, 4, 4)
    assert bad.select("row_number", "row_key", "reason").rows() == [
        (2, "code.1#1 / m1", "score outside [0, 1]"),
        (3, "math.2#2 / m1", "empty prompt or prompt over 1,000,000 characters"),
        (3, "math.2#2 / m2", "empty prompt or prompt over 1,000,000 characters"),
        (4, "code.3#3 / m2", "cost negative, infinite or over $1000"),
    ]
    assert '"_raw_quality": "1.7"' in bad["raw"][0]
    stored = table(store, "outcomes")
    assert sorted(zip(stored["sample_key"], stored["model"], strict=True)) == [
        ("code.1#1", "m2"), ("code.3#3", "m1"), ("math.0#0", "m1"), ("math.0#0", "m2")]


class _Boom:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled!"))


def test_pickles_are_unpickled_only_when_named_or_allowed(files, ingest, store, tmp_path) -> None:
    marker = tmp_path / "pwned.txt"
    folder = files.root / "drop"
    evil = files.raw("drop/evil.pkl", pickle.dumps(_Boom(marker)))
    files.write("drop/bench_train.pkl", files.routerbench_rows(n=3))
    files.write("drop/bench_test.csv", files.routerbench_rows(n=2, start=3))

    found, notes = discover([folder], "routerbench")
    assert [p.name for p in found] == ["bench_test.csv"]
    assert sum("pickles found in folders are not unpickled" in n for n in notes) == 2
    for path in found:
        ingest("routerbench", path)
    assert not marker.exists()  # neither pickle in the folder was opened

    # Named on the command line: unpickled (the RouterBench frame's index is the original row number).
    result = ingest("routerbench", folder / "bench_train.pkl")
    assert (result.rows_in, result.rows_ok) == (9, 9)
    keys = set(table(store, "outcomes")["sample_key"])
    assert {"math.0#0", "code.1#1", "math.2#2", "code.3#3", "math.4#4"} == keys
    # A flag allows pickles found in folders.
    found, _ = discover([folder], "routerbench", allow_pickle=True)
    assert sorted(p.name for p in found) == ["bench_test.csv", "bench_train.pkl", "evil.pkl"]
    with pytest.raises(IngestError, match="not a pandas DataFrame"):
        ingest("routerbench", evil)
    assert marker.exists()  # ... which is exactly why it must be opt-in


def test_gx_data_docs_are_written_under_the_workspace(files, ingest, settings) -> None:
    ingest("logs", files.logs(n=2))
    docs = settings.gx_docs
    assert docs.is_relative_to(settings.workspace)
    index = docs / "index.html"
    assert index.is_file()
    pages = list((docs / "validations" / "logs").rglob("*.html"))
    assert len(pages) == 1
    html = pages[0].read_text()
    assert "expect_column_values_to_be_between" in html or "values must be" in html
    assert (docs / "expectations" / "logs.html").is_file()
    ingest("backlog", files.backlog(n=2))
    assert len(list((docs / "validations" / "backlog").rglob("*.html"))) == 1


def test_gx_data_docs_keep_earlier_runs_and_build_once_per_batch(files, ingest, settings, monkeypatch) -> None:
    docs = settings.gx_docs
    ingest("logs", files.logs("day1.jsonl", n=2))
    # A new process has a new (ephemeral) GX context: the pages of earlier runs must survive its first build.
    monkeypatch.setattr(validation, "_VALIDATORS", {})
    builds: list[int] = []
    real_publish = validation._Validator.publish

    def counted(self, keep: int = 0) -> int:
        rendered = real_publish(self, keep)
        builds.append(rendered)
        return rendered

    monkeypatch.setattr(validation._Validator, "publish", counted)
    with validation.docs_batch(docs):
        ingest("logs", files.logs("day2.jsonl", records=[files.log_record(i) for i in range(5, 8)]))
        ingest("backlog", files.backlog(n=2))
        assert builds == []  # nothing rendered inside the batch
        assert len(list((docs / "validations" / "logs").rglob("*.html"))) == 1
    assert builds == [2]  # one build for both files
    logs_pages = sorted((docs / "validations" / "logs").rglob("*.html"))
    assert len(logs_pages) == 2
    assert len(list((docs / "validations" / "backlog").rglob("*.html"))) == 1
    index = (docs / "index.html").read_text()
    for page in [*logs_pages, *(docs / "validations" / "backlog").rglob("*.html")]:
        assert str(page.relative_to(docs)) in index  # listed, including the earlier process's page
    assert len(list((docs / validation.RESULTS_FOLDER).rglob("*.json"))) == 3


def test_ingest_files_reports_each_file_and_builds_the_docs_once(files, store, settings, counts, monkeypatch) -> None:
    builds: list[int] = []
    real_publish = validation._Validator.publish

    def counted(self, keep: int = 0) -> int:
        builds.append(real_publish(self, keep))
        return builds[-1]

    monkeypatch.setattr(validation._Validator, "publish", counted)
    good = [files.logs("a.jsonl", n=2), files.logs("b.jsonl", records=[files.log_record(i) for i in range(5, 8)])]
    broken = files.raw("broken.jsonl.gz", b"\x1f\x8b\x08 not really")
    seen = []
    for path, outcome in ingest_mod.ingest_files(store, "logs", [good[0], broken, good[1]], settings):
        seen.append((path.name, outcome.rows_new if isinstance(outcome, ingest_mod.IngestResult) else str(outcome)))
        assert builds == []  # no page is built while files are still being ingested
    assert seen[0] == ("a.jsonl", 2) and seen[2] == ("b.jsonl", 3)
    assert seen[1][0] == "broken.jsonl.gz" and "not a readable gzip file" in seen[1][1]  # and the next file went on
    assert builds == [2]  # one build, for the two validated files
    assert counts()["outcomes"] == 5


def test_gx_data_docs_keep_the_newest_validations(files, ingest, settings) -> None:
    """ROUTER_GX_DOCS_KEEP bounds the site: each build deletes the oldest results, and their pages go with them;
    results still waiting for their page are never deleted, even when a batch holds more than the limit."""
    docs = settings.gx_docs
    settings.gx_docs_keep = 2

    def stored() -> tuple[list[str], list[str]]:
        results = sorted(p.parent.name for p in (docs / validation.RESULTS_FOLDER).rglob("*.json"))
        pages = sorted(p.parent.name for p in (docs / "validations").rglob("*.html"))
        return results, pages

    for day in range(1, 5):
        ingest("logs", files.logs(f"day{day}.jsonl", records=[files.log_record(10 * day + i) for i in range(2)]))
        results, pages = stored()
        assert len(results) == min(day, 2) and pages == results
    newest_two = results
    with validation.docs_batch(docs, keep=1):  # three results pending at the build: all three are kept
        for day in range(5, 8):
            ingest("logs", files.logs(f"day{day}.jsonl", records=[files.log_record(10 * day + i) for i in range(2)]))
    results, pages = stored()
    assert len(results) == 3 and pages == results and not set(newest_two) & set(results)
    index = (docs / "index.html").read_text()
    assert all(run in index for run in results) and not any(run in index for run in newest_two)
    for root in (docs / validation.RESULTS_FOLDER, docs / "validations"):  # no empty run folders left behind
        assert [p for p in root.rglob("*") if p.is_dir() and not any(p.iterdir())] == []


def test_a_data_docs_failure_keeps_the_data_and_is_retried(files, ingest, settings, store, monkeypatch,
                                                           caplog) -> None:
    docs = settings.gx_docs
    ingest("logs", files.logs("day1.jsonl", n=2))
    context = validation._VALIDATORS[docs].context
    real_build = context.build_data_docs

    def broken(**kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(context, "build_data_docs", broken)
    result = ingest("logs", files.logs("day2.jsonl", records=[files.log_record(i) for i in range(5, 8)]))
    assert result.rows_new == 3 and len(table(store, "outcomes")) == 5  # committed all the same
    assert "could not build the Data Docs" in caplog.text
    assert len(list((docs / "validations" / "logs").rglob("*.html"))) == 1
    monkeypatch.setattr(context, "build_data_docs", real_build)
    ingest("backlog", files.backlog(n=2))
    assert len(list((docs / "validations" / "logs").rglob("*.html"))) == 2  # the failed page, retried
    assert len(list((docs / "validations" / "backlog").rglob("*.html"))) == 1


def test_a_failure_during_commit_leaves_the_store_as_before(files, ingest, counts, monkeypatch) -> None:
    ingest("logs", files.logs("day1.jsonl", n=2))
    before = counts()
    real_query = ingest_mod.query

    def broken(name: str, *args):
        if name == "ingest/insert_run":  # the last statement: prompts, models, outcomes already inserted
            return real_query(name, *args).replace("INSERT INTO ingest_runs", "INSERT INTO no_such_table", 1)
        return real_query(name, *args)

    monkeypatch.setattr(ingest_mod, "query", broken)
    with pytest.raises(duckdb.Error, match="no_such_table"):
        ingest("logs", files.logs("day2.jsonl", records=[files.log_record(i, model=f"new-{i}") for i in range(5, 9)]))
    assert counts() == before


def test_records_only_gx_fails_are_quarantined_by_a_second_commit(files, settings, store, counts, reconciled,
                                                                   monkeypatch, caplog) -> None:
    """The batch is written while GX validates; if GX fails records the compiled checks passed (here the
    compiled bounds check is broken: it never fails), the transaction is rolled back and committed again with
    them quarantined: nothing is stored twice and the run reconciles."""
    broken = dict(validation.COMPILED)
    known, _ = broken["expect_column_values_to_be_between"]
    broken["expect_column_values_to_be_between"] = (known, lambda col, kw, dtype: pl.lit(False))
    monkeypatch.setattr(validation, "COMPILED", broken)
    commits = []
    real_commit = ingest_mod.commit

    def counted(*args, **kwargs):
        commits.append(kwargs.get("confirm", args[7] if len(args) > 7 else None))
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(ingest_mod, "commit", counted)
    records = [files.log_record(i) for i in range(5)]
    records[1]["quality"] = 1.7  # only GX sees it
    records[3]["prompt"] = None  # both engines see it
    result = ingest_file(store, "logs", files.logs("day1.jsonl", records=records), settings)
    assert len(commits) == 2 and commits[0] is not None and commits[1] is None
    assert "committing again" in caplog.text
    assert result.gx_disagreements == 1
    bad = reconciled(result)
    assert bad.select("row_number", "reason").rows() == [(2, "quality outside [0, 1]"), (4, "missing prompt")]
    assert (result.rows_in, result.rows_ok, result.rows_new) == (5, 3, 3)
    assert sorted(table(store, "outcomes")["sample_key"]) == ["req-0", "req-2", "req-4"]
    assert counts()["prompts"] == 3 and counts()["ingest_runs"] == 1


def test_a_gx_error_rolls_the_batch_back(files, ingest, settings, counts, monkeypatch) -> None:
    ingest("logs", files.logs("day1.jsonl", n=2))
    before = counts()

    def failing(*args, **kwargs):
        raise RuntimeError("expectation could not run")

    monkeypatch.setattr(validation, "_run_gx", failing)
    with pytest.raises(RuntimeError, match="could not run"):
        ingest("logs", files.logs("day2.jsonl", records=[files.log_record(i) for i in range(5, 8)]))
    assert counts() == before


def test_a_prompt_sent_many_times_is_stored_once_with_its_first_task(files, ingest, store, counts) -> None:
    records = [files.log_record(i, prompt="Same question", task=task) for i, task in enumerate(["qa", "chat", None])]
    records += [files.log_record(3, prompt="Other question", task="code")]
    result = ingest("logs", files.logs("repeats.jsonl", records))
    assert (result.rows_new, counts()["prompts"]) == (4, 2)
    prompts = table(store, "prompts").sort("text")
    assert prompts.select("text", "task", "n_chars").rows() == [("Other question", "code", 14),
                                                                ("Same question", "qa", 13)]
    outcomes = table(store, "outcomes")
    assert outcomes.filter(pl.col("sample_key") != "req-3")["prompt_id"].unique().to_list() == [
        prompts.filter(pl.col("text") == "Same question")["prompt_id"].item()]


@pytest.mark.parametrize("hashes", ["polars", "colliding"])
def test_first_occurrences_is_exact_even_when_hashes_collide(hashes) -> None:
    ids = pl.Series("prompt_id", ["b", "a", "b", "c", "a", "d", "c"])
    # "colliding": every id gets the same hash, so only the exact test on the text can tell them apart
    given = None if hashes == "polars" else pl.Series([7] * ids.len(), dtype=pl.UInt64)
    first = ingest_mod.first_occurrences(ids, given)
    assert first is not None and first.to_list() == [True, True, False, True, False, True, False]
    assert ingest_mod.first_occurrences(pl.Series(["x", "y", "z"])) is None  # all distinct: nothing to filter
    # distinct ids whose hashes collide are all kept, each once
    pairs = pl.Series([5, 5, 9], dtype=pl.UInt64)
    assert ingest_mod.first_occurrences(pl.Series(["p", "q", "p"]), pairs).to_list() == [True, True, False]


def test_cli_style_folder_ingest_copies_are_skipped(files, ingest, counts, tmp_path) -> None:
    path = files.backlog("b1.jsonl", n=4)
    assert ingest("backlog", path).rows_new == 4
    copy = tmp_path / "copy_of_b1.jsonl"
    shutil.copy(path, copy)
    before = counts()
    result = ingest("backlog", copy)
    assert result.status == "skipped" and str(path) in result.message
    assert counts() == before
