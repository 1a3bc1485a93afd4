"""The bad-input catalog (docs/reliability.md): every case is a test.

Each case ends one of two ways: the file is refused whole with an error naming it (and the columns or rows at
fault) and no table changes (``rejected``), or the good rows are stored and the bad ones are in ``quarantine``
with their row numbers and reasons, ``ingest_runs`` reconciling (``reconciled``).
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from conftest import MODELS, table
from router import coercion
from router import ingest as ingest_mod
from router.ingest import IngestError, discover

ONE_MB = 1 << 20


def _outcome(store, key: str, model: str) -> dict:
    rows = table(store, "outcomes").filter((pl.col("sample_key") == key) & (pl.col("model") == model))
    assert rows.height == 1, (key, model, rows)
    return rows.row(0, named=True)


# --------------------------------------------------------------------------------------- RouterBench schema
@pytest.mark.parametrize(
    ("drop", "needle"),
    [("prompt", "missing columns ['prompt']"), ("eval_name", "missing columns ['eval_name']"),
     ("sample_id", "missing columns ['sample_id']")],
)
def test_routerbench_missing_column(files, rejected, drop, needle) -> None:
    rows = [{k: v for k, v in r.items() if k != drop} for r in files.routerbench_rows(n=3)]
    rejected("routerbench", files.write(f"no_{drop}.csv", rows), needle)


def test_routerbench_extra_column(files, rejected) -> None:
    rows = [{**r, "notes": "hand-checked"} for r in files.routerbench_rows(n=3)]
    rejected("routerbench", files.write("extra.csv", rows), "score columns without a '{model}|total_cost' column",
             "'notes'")


def test_routerbench_renamed_column(files, rejected) -> None:
    rows = [{("question" if k == "prompt" else k): v for k, v in r.items()} for r in files.routerbench_rows(n=3)]
    rejected("routerbench", files.write("renamed.parquet", rows), "missing columns ['prompt']", "'question'")


def test_routerbench_model_column_without_cost_column(files, rejected) -> None:
    rows = [{k: v for k, v in r.items() if k != "gamma|total_cost"} for r in files.routerbench_rows(n=3)]
    rejected("routerbench", files.write("nocost.csv", rows), "score columns without a", "['gamma']")


def test_routerbench_cost_column_without_score_column(files, rejected) -> None:
    rows = [{k: v for k, v in r.items() if k != "gamma"} for r in files.routerbench_rows(n=3)]
    rejected("routerbench", files.write("noscore.csv", rows), "cost columns without a score column",
             "'gamma|total_cost'")


def test_routerbench_no_model_columns(files, rejected) -> None:
    rows = [{"sample_id": "s.1", "prompt": "hi", "eval_name": "e"}]
    rejected("routerbench", files.write("nomodels.csv", rows), "no model columns")


def test_routerbench_nested_column_type_in_parquet(files, rejected) -> None:
    rows = files.routerbench_rows(n=2)
    for r in rows:
        r["gamma"] = {"score": 1.0}
    rejected("routerbench", files.write("nested.parquet", rows), "wrong column types", "'gamma' is Struct")


# --------------------------------------------------------------------------------------- RouterBench values
def test_routerbench_scores_as_strings_and_object_dtype_pickle(files, ingest, store, reconciled) -> None:
    rows = files.routerbench_rows(n=4, models=("m1",))
    for r, score in zip(rows, ["1", " 0.25 ", "True", "nan"], strict=True):
        r["m1"] = score
    frame = pd.DataFrame(rows).set_index("")
    frame["m1"] = frame["m1"].astype(object)
    frame["m1|total_cost"] = frame["m1|total_cost"].astype(object)
    frame.loc[frame.index[0], "m1|total_cost"] = "0.5"  # object-dtype cost column: numbers and a string
    path = files.raw("strings_train.pkl", pickle.dumps(frame.rename_axis(None)))
    result = ingest("routerbench", path)
    assert reconciled(result).height == 0
    got = {k: _outcome(store, k, "m1") for k in ("math.0#0", "code.1#1", "math.2#2", "code.3#3")}
    assert [got[k]["quality"] for k in got] == [1.0, 0.25, 1.0, None]  # "nan" = not scored, stored NULL
    assert got["math.0#0"]["cost_usd"] == 0.5


def test_routerbench_non_numeric_nan_and_inf_scores(files, ingest, store, reconciled) -> None:
    rows = files.routerbench_rows(n=4, models=("m1",))
    rows[0]["m1"], rows[1]["m1"], rows[2]["m1"], rows[3]["m1"] = "abc", "NaN", "inf", ""
    result = ingest("routerbench", files.write("scores_train.csv", rows))
    bad = reconciled(result)
    assert bad.select("row_number", "reason").rows() == [(1, "score is not a number"), (3, "score outside [0, 1]")]
    assert json.loads(bad["raw"][0])["_raw_quality"] == "abc"
    assert _outcome(store, "code.1#1", "m1")["quality"] is None  # NaN: not scored
    assert _outcome(store, "code.3#3", "m1")["quality"] is None  # empty cell: not scored


@pytest.mark.parametrize("score", [1.5, -0.1, 100.0])
def test_routerbench_score_outside_unit_interval(files, ingest, reconciled, score) -> None:
    rows = files.routerbench_rows(n=2)
    rows[1]["beta/chat-v2"] = score
    bad = reconciled(ingest("routerbench", files.write("range_train.parquet", rows)))
    assert bad.select("row_number", "row_key", "reason").rows() == [
        (2, "code.1#1 / beta/chat-v2", "score outside [0, 1]")]


def test_routerbench_negative_missing_and_non_numeric_cost(files, ingest, reconciled) -> None:
    rows = files.routerbench_rows(n=4, models=("m1",))
    rows[0]["m1|total_cost"], rows[1]["m1|total_cost"], rows[2]["m1|total_cost"] = -0.01, "free", ""
    rows[3]["m1|total_cost"] = "-inf"
    result = ingest("routerbench", files.write("cost_train.csv", rows))
    bad = reconciled(result)
    assert (result.rows_ok, result.rows_quarantined) == (0, 4)
    assert bad["reason"].to_list() == [
        "cost negative, infinite or over $1000",
        "cost is not a number; missing or non-numeric cost",
        "missing or non-numeric cost",
        "cost negative, infinite or over $1000",
    ]


def test_routerbench_duplicate_keys_within_file(files, ingest, store, reconciled) -> None:
    rows = files.routerbench_rows(n=3, models=("m1",))
    rows.append({**rows[1], "m1": 0.0})  # same sample_id and row index as row 2
    result = ingest("routerbench", files.write("dups_train.csv", rows))
    bad = reconciled(result)
    assert bad.select("row_number", "row_key", "reason").rows() == [
        (4, "code.1#1 / m1", "duplicate (sample_id, model) within file (first at row 2)")]
    assert _outcome(store, "code.1#1", "m1")["quality"] == rows[1]["m1"]  # the first one wins


@pytest.mark.parametrize("kind", ["routerbench", "logs", "backlog"])
def test_a_csv_row_cut_off_or_short_is_quarantined_not_filled_with_nulls(files, ingest, store, reconciled,
                                                                         kind) -> None:
    """A writer that died mid-line leaves a last row with fewer fields than the header (polars would fill the rest
    with nulls and store it): that row is quarantined with the count, a blank line as a blank line, and a row whose
    last field is empty but present is a whole row (and a 200 KB prompt is read whole)."""
    rows = {"routerbench": files.routerbench_rows(n=4, models=("m1",)),
            "logs": [files.log_record(i, task=f"t{i}") for i in range(4)],
            "backlog": [files.backlog_record(i, task=f"t{i}") for i in range(4)]}[kind]
    rows[2]["prompt"] = "a prompt past the csv module's default field limit " * 4_000
    text = files.write(f"cut_{kind}_train.csv", rows).read_text()
    header, *lines = text.splitlines()
    width = header.count(",") + 1
    lines[1] = lines[1].rsplit(",", 1)[0] + ","  # an empty last field: still a whole row
    text = "\n".join([header, lines[0], lines[1], "", lines[2], lines[3][:lines[3].index(",") + 4]])  # cut
    result = ingest(kind, files.raw(f"cut_{kind}_train.csv", text))
    bad = reconciled(result)
    assert bad.select("row_number", "reason").rows() == [
        (3, "blank line"), (5, f"row has 2 of the header's {width} fields (cut off?)")]
    assert result.rows_quarantined == 2
    stored = table(store, "backlog" if kind == "backlog" else "outcomes")
    assert stored.height == 3


def test_a_csv_with_carriage_return_line_ends_is_read_row_by_row(files, ingest, store) -> None:
    text = files.write("cr.csv", [files.backlog_record(i) for i in range(3)]).read_text()
    result = ingest("backlog", files.raw("cr.csv", text.replace("\n", "\r")))
    assert (result.rows_in, result.rows_new) == (3, 3)
    assert sorted(table(store, "backlog")["query_id"]) == ["q-0", "q-1", "q-2"]


def test_routerbench_sample_id_reused_with_another_row_index_is_not_a_duplicate(files, ingest, store) -> None:
    rows = files.routerbench_rows(n=2, models=("m1",))
    rows[1] = {**rows[1], "sample_id": rows[0]["sample_id"], "prompt": "['another question']"}
    result = ingest("routerbench", files.write("reuse_train.csv", rows))
    assert (result.rows_ok, result.rows_quarantined) == (2, 0)
    assert sorted(table(store, "outcomes")["sample_key"]) == ["math.0#0", "math.0#1"]


def test_routerbench_duplicate_keys_across_files(files, ingest, store, counts, reconciled) -> None:
    rows = files.routerbench_rows(n=3, models=("m1",))
    ingest("routerbench", files.write("a_train.csv", rows))
    before = counts()
    changed = [dict(r) for r in rows] + files.routerbench_rows(n=1, models=("m1",), start=3)
    changed[0]["m1"] = 1.0 - changed[0]["m1"]  # same key, other score: a conflict, not an update
    result = ingest("routerbench", files.write("b_train.parquet", changed))
    bad = reconciled(result)
    assert (result.rows_in, result.rows_ok, result.rows_new, result.rows_quarantined) == (4, 3, 1, 1)
    assert bad["row_key"].to_list() == ["math.0#0 / m1"]
    assert bad["reason"][0].startswith("conflicts with the stored record from ingest run ")
    assert _outcome(store, "math.0#0", "m1")["quality"] == rows[0]["m1"]  # stored value kept
    assert counts()["outcomes"] == before["outcomes"] + 1


def test_routerbench_prompt_stored_as_list_of_strings_in_parquet(files, ingest, store) -> None:
    rows = files.routerbench_rows(n=1, models=("m1",))
    rows[0]["prompt"] = ["First part.", "Second part."]
    ingest("routerbench", files.write("listprompt_train.parquet", rows))
    assert table(store, "prompts")["text"].to_list() == ["First part.\nSecond part."]


# --------------------------------------------------------------------------------------------- prompts
@pytest.mark.parametrize(
    ("kind", "name"), [("routerbench", "p_train.csv"), ("logs", "p.jsonl"), ("backlog", "p.parquet")]
)
def test_empty_null_and_oversized_prompts(files, ingest, store, reconciled, kind, name) -> None:
    prompts = ["", "   \n\t", None, "x" * 1_000_000, "y" * ONE_MB, "fine"]
    if kind == "routerbench":
        rows = files.routerbench_rows(n=len(prompts), models=("m1",))
        for r, p in zip(rows, prompts, strict=True):
            r["prompt"] = p
    elif kind == "logs":
        rows = [files.log_record(i, prompt=p) for i, p in enumerate(prompts)]
    else:
        rows = [files.backlog_record(i, prompt=p) for i, p in enumerate(prompts)]
    result = ingest(kind, files.write(name, rows))
    bad = reconciled(result)
    too_long = "empty prompt or prompt over 1,000,000 characters"
    empty = "missing prompt" if name.endswith(".csv") else too_long  # CSV cannot tell "" from null
    assert bad.select("row_number", "reason").rows() == [
        (1, empty), (2, too_long), (3, "missing prompt"), (5, too_long)]
    assert (result.rows_ok, result.rows_quarantined) == (2, 4)
    # A 1,000,000-character prompt is stored whole; the 1 MiB one is quarantined with its text clipped.
    assert sorted(table(store, "prompts")["n_chars"].to_list()) == [4, 1_000_000]
    assert len(bad["raw"][3]) < 25_000 and "more chars]" in bad["raw"][3]


# ------------------------------------------------------------------------------------------ encodings
def test_invalid_utf8_and_mixed_encodings_in_csv(files, ingest, store, reconciled) -> None:
    data = ("query_id,prompt,task\nq1,café crème,chat\n".encode()
            + "q2,café latin-1,chat\n".encode("latin-1")  # a Latin-1 line inside a UTF-8 file
            + b"q3,bad \xff\xfe bytes,chat\n"
            + "q4,ok,t\xe2che\n".encode("latin-1"))  # bad bytes in another column
    bad = reconciled(ingest("backlog", files.raw("mixed.csv", data)))
    assert bad.select("row_number", "row_key", "reason").rows() == [
        (2, "q2", "prompt is not valid UTF-8"), (3, "q3", "prompt is not valid UTF-8"),
        (4, "q4", "task is not valid UTF-8")]
    assert table(store, "prompts")["text"].to_list() == ["café crème"]


def test_invalid_utf8_in_a_routerbench_csv(files, ingest, store, reconciled) -> None:
    header = ",sample_id,prompt,eval_name,m1,m1|total_cost\n".encode()
    data = (header + "0,s.0,['Qu\u2019est-ce que c\u2019est ?'],fr,1,0.1\n".encode()
            + "1,s.1,['R\u00e9sum\u00e9 latin-1'],fr,1,0.1\n".encode("latin-1")
            + b"2,s.2,['ok'],f\xe9,0,0.1\n")
    bad = reconciled(ingest("routerbench", files.raw("enc_train.csv", data)))
    assert bad.select("row_number", "row_key", "reason").rows() == [
        (2, "s.1#1 / m1", "prompt is not valid UTF-8"), (3, "s.2#2 / m1", "eval_name is not valid UTF-8")]
    assert table(store, "prompts")["text"].to_list() == ["Qu\u2019est-ce que c\u2019est ?"]


def test_invalid_utf8_line_in_jsonl(files, ingest, store, reconciled) -> None:
    good = json.dumps(files.log_record(0)).encode()
    broken = json.dumps(files.log_record(1, prompt="café"), ensure_ascii=False).encode().replace("é".encode(), b"\xe9")
    bad = reconciled(ingest("logs", files.raw("utf8.jsonl", good + b"\n" + broken + b"\n")))
    at = broken.index(b"\xe9")
    assert bad.select("row_number", "reason").rows() == [(2, f"invalid UTF-8 at byte {at}")]
    assert table(store, "outcomes")["sample_key"].to_list() == ["req-0"]


def test_invalid_utf8_in_a_binary_parquet_column(files, ingest, store, reconciled) -> None:
    path = files.root / "binary.parquet"
    pl.DataFrame({"query_id": ["q1", "q2"], "prompt": ["fine".encode(), b"caf\xe9"]}).write_parquet(path)
    bad = reconciled(ingest("backlog", path))
    assert bad.select("row_number", "row_key", "reason").rows() == [(2, "q2", "prompt is not valid UTF-8")]
    assert table(store, "prompts")["text"].to_list() == ["fine"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_byte_order_marks_are_understood(files, ingest, store, encoding) -> None:
    text = "".join(json.dumps(files.log_record(i, prompt=f"naïve {i}"), ensure_ascii=False) + "\n" for i in range(2))
    result = ingest("logs", files.raw(f"bom_{encoding}.jsonl", text.encode(encoding)))
    assert (result.rows_ok, result.rows_quarantined) == (2, 0)
    assert sorted(table(store, "prompts")["text"]) == ["naïve 0", "naïve 1"]
    csv_text = "query_id,prompt\nq1,naïve\n"
    assert ingest("backlog", files.raw(f"bom_{encoding}.csv", csv_text.encode(encoding))).rows_ok == 1


# ---------------------------------------------------------------------------------------------- logs
@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda r: r.pop("cost_usd"), ["missing columns ['cost_usd']"]),
        (lambda r: r.update(user_id="u1"), ["unexpected columns ['user_id']"]),
        (lambda r: r.update(timestamp=r.pop("ts")), ["missing columns ['ts']", "unexpected columns ['timestamp']"]),
    ],
    ids=["missing", "extra", "renamed"],
)
def test_logs_wrong_columns(files, rejected, change, needles) -> None:
    records = [files.log_record(i) for i in range(3)]
    for r in records:
        change(r)
    message = rejected("logs", files.write("cols.parquet", records), *needles)
    assert "required ['request_id', 'ts', 'prompt', 'model', 'quality', 'cost_usd']" in message


def test_logs_parquet_written_by_pandas_with_an_index(files, ingest, store) -> None:
    frame = pd.DataFrame([files.log_record(i) for i in range(3)], index=[7, 8, 9])  # a filtered frame
    path = files.root / "pandas.parquet"
    frame.to_parquet(path)  # stores the index as a __index_level_0__ column: not data, not an extra column
    assert "__index_level_0__" in pl.read_parquet(path).columns
    assert ingest("logs", path).rows_new == 3


def test_logs_nested_column_type_in_parquet(files, rejected) -> None:
    records = [files.log_record(i, prompt=["a", "b"]) for i in range(2)]
    rejected("logs", files.write("nested.parquet", records), "'prompt' is List(String)")


def test_logs_quality_outside_range_nan_inf_and_strings(files, ingest, store, reconciled) -> None:
    qualities = [0.0, 1.0, "0.75", None, 1.01, -0.5, "excellent", True]
    lines = [json.dumps(files.log_record(i, quality=q)) for i, q in enumerate(qualities)]
    lines.append(json.dumps(files.log_record(8)).replace('"quality": 0.5', '"quality": NaN'))
    lines.append(json.dumps(files.log_record(9)).replace('"quality": 0.5', '"quality": Infinity'))
    result = ingest("logs", files.raw("quality.jsonl", "\n".join(lines) + "\n"))
    bad = reconciled(result)
    assert bad.select("row_number", "reason").rows() == [
        (5, "quality outside [0, 1]"), (6, "quality outside [0, 1]"), (7, "quality is not a number"),
        (10, "quality outside [0, 1]")]
    stored = dict(zip(*table(store, "outcomes").select("sample_key", "quality").to_dict().values(), strict=True))
    # null and NaN mean "not scored": stored NULL (masked in training), not quarantined
    assert stored == {"req-0": 0.0, "req-1": 1.0, "req-2": 0.75, "req-3": None, "req-7": 1.0, "req-8": None}


def test_logs_negative_non_numeric_and_missing_cost(files, ingest, store, reconciled) -> None:
    costs = [0.0, "0.002", -0.001, "n/a", None, 5000.0]
    result = ingest("logs", files.write("cost.jsonl", [files.log_record(i, cost_usd=c) for i, c in enumerate(costs)]))
    bad = reconciled(result)
    assert bad.select("row_number", "row_key", "reason").rows() == [
        (3, "req-2 / alpha-7b", "cost_usd negative, infinite or over $1000"),
        (4, "req-3 / alpha-7b", "cost_usd is not a number; missing or non-numeric cost_usd"),
        (5, "req-4 / alpha-7b", "missing or non-numeric cost_usd"),
        (6, "req-5 / alpha-7b", "cost_usd negative, infinite or over $1000"),
    ]
    assert sorted(table(store, "outcomes")["cost_usd"]) == [0.0, 0.002]


def test_logs_infinite_latency_and_token_counts_past_int64_are_quarantined(files, ingest, store, reconciled) -> None:
    """Values the store cannot hold are quarantined with a reason, not stored as NULL or inf: an infinite latency,
    a token count of 1e30, "Infinity" or 2**64 − 1; the largest count that fits is stored as it is."""
    records = [files.log_record(0, latency_ms="Infinity"), files.log_record(1, tokens_in=1e30),
               files.log_record(2, tokens_out="Infinity"), files.log_record(3, tokens_in=2**64 - 1),
               files.log_record(4, tokens_in=2**53, latency_ms=12.5)]
    result = ingest("logs", files.logs("range.jsonl", records))
    bad = reconciled(result)
    assert bad.select("row_number", "reason").rows() == [
        (n, "latency_ms/tokens_in/tokens_out is infinite or too large") for n in (1, 2, 3, 4)]
    row = _outcome(store, "req-4", "alpha-7b")
    assert (row["tokens_in"], row["latency_ms"]) == (2**53, 12.5)


def test_logs_wrong_types_are_coerced_or_quarantined(files, ingest, store, reconciled) -> None:
    frame = pl.DataFrame({
        "request_id": [1, 2, 3], "ts": [datetime(2025, 1, 1, 9, tzinfo=UTC)] * 3, "prompt": ["a", "b", "c"],
        "model": ["m", "m", "m"], "quality": ["0.5", "1", "high"], "cost_usd": ["0.1", "0.2", "0.3"],
        "tokens_in": [10.0, 12.5, 3.0], "latency_ms": [1.0, 2.0, 3.0],
    })
    path = files.root / "types.parquet"
    frame.write_parquet(path)
    bad = reconciled(ingest("logs", path))
    assert bad.select("row_number", "reason").rows() == [
        (2, "tokens_in/tokens_out is not a whole number"), (3, "quality is not a number")]
    row = _outcome(store, "1", "m")
    assert (row["quality"], row["cost_usd"], row["tokens_in"]) == (0.5, 0.1, 10)
    assert row["ts"] == datetime(2025, 1, 1, 9, tzinfo=UTC)


def test_logs_unknown_model_becomes_a_new_model_row(files, ingest, store, reconciled) -> None:
    ingest("routerbench", files.routerbench("pool_train.csv", n=2))
    assert sorted(table(store, "models")["name"]) == sorted(MODELS)
    records = [files.log_record(0, model="brand-new/model-2025"), files.log_record(1, model="  gamma  ")]
    reconciled(ingest("logs", files.logs("new.jsonl", records)))
    assert sorted(table(store, "models")["name"]) == sorted([*MODELS, "brand-new/model-2025"])
    assert _outcome(store, "req-1", "gamma")["cost_usd"] == 0.002  # names are trimmed


def test_logs_truncated_jsonl_line(files, ingest, store, reconciled) -> None:
    lines = [json.dumps(files.log_record(i)) for i in range(3)]
    text = "\n".join(lines) + "\n" + json.dumps(files.log_record(3))[:40]  # writer died mid-line
    result = ingest("logs", files.raw("truncated.jsonl", text))
    bad = reconciled(result)
    assert (result.rows_in, result.rows_ok, result.rows_quarantined) == (4, 3, 1)
    assert bad["row_number"].to_list() == [4]
    assert bad["reason"][0].startswith("invalid JSON (truncated line?)")
    assert json.loads(bad["raw"][0]) == json.dumps(files.log_record(3))[:40]  # kept as a JSON string


def test_logs_every_line_unreadable(files, ingest, reconciled) -> None:
    result = ingest("logs", files.raw("garbage.jsonl", '{"request_id": "a",\n[1, 2]\n"text"\n'))
    bad = reconciled(result)
    assert (result.rows_in, result.rows_ok, result.rows_quarantined) == (3, 0, 3)
    assert bad["reason"].to_list()[1:] == ["line is a JSON list, not an object", "line is a JSON str, not an object"]


def test_large_jsonl_with_bad_lines_reads_as_line_by_line_would(files, ingest, store, tmp_path, monkeypatch) -> None:
    """A file polars refuses as a whole is read in pieces (polars where it accepts a piece, Python for the rest):
    the stored rows and the quarantine equal those of reading every line with Python's json."""
    from router import readers
    from router.settings import Settings
    from router.storage import open_store

    lines = [json.dumps(files.log_record(i, quality=(i % 5) / 4)) for i in range(3000)]
    lines[700] = lines[700][:-10]  # truncated, in the middle
    lines[1200] = "[1, 2, 3]"  # not an object
    lines[1500] = ""  # a blank line
    lines[1800] = json.dumps(files.log_record(1800, task={"nested": True}))  # a nested value
    lines[2100] = json.dumps(files.log_record(2100, quality="high"))  # another type than its column's
    lines[2600] = json.dumps(files.log_record(2600, latency_ms=12.5))  # a key no other line has
    data = ("\n".join(lines) + "\n" + json.dumps(files.log_record(3000))[:40]).encode()  # a truncated last line
    data = data.replace(b'"Log prompt 2400"', b'"Log prompt \xff 2400"')  # invalid UTF-8
    path = files.raw("big.jsonl", data)
    monkeypatch.setattr(readers, "JSONL_PIECE_LINES", 16)  # pieces as small as a large file's would be

    accepted: list[int] = []
    real_polars = readers._polars_ndjson

    def spied(raw: bytes, lines: int, expected: tuple[str, ...] = ()):
        df = real_polars(raw, lines, expected)
        if df is not None:
            accepted.append(lines)
        return df

    monkeypatch.setattr(readers, "_polars_ndjson", spied)
    pieces = ingest("logs", path)
    assert sum(accepted) > 2800  # most lines were read by polars, in pieces
    monkeypatch.setattr(readers, "_polars_ndjson", real_polars)

    def stored(con) -> tuple[list, list]:
        outcomes = table(con, "outcomes").sort("sample_key").select(
            "sample_key", "model", "prompt_id", "quality", "cost_usd", "task", "ts", "latency_ms").rows()
        quarantine = table(con, "quarantine").sort("row_number").select("row_number", "row_key", "reason").rows()
        return outcomes, quarantine

    every_line = readers._read_jsonl_lines  # every line through Python's json, as the reader once did
    monkeypatch.setattr(readers, "_read_jsonl_pieces", lambda path, raw, expected=(): every_line(path, raw))
    other = Settings(home=tmp_path / "line_by_line")
    other.ensure_workspace()
    with open_store(other) as con:
        lines_result = ingest_mod.ingest_file(con, "logs", path, other)
        assert stored(con) == stored(store)
    assert (pieces.rows_in, pieces.rows_ok, pieces.rows_quarantined) == (
        lines_result.rows_in, lines_result.rows_ok, lines_result.rows_quarantined) == (3000, 2995, 5)
    outcomes, quarantine = stored(store)
    assert [(row, reason.split(":")[0]) for row, _, reason in quarantine] == [
        (701, "invalid JSON (truncated line?)"), (1201, "line is a JSON list, not an object"),
        (2101, "quality is not a number"), (2401, "invalid UTF-8 at byte 79"), (3001, "invalid JSON (truncated line?)")]
    assert _outcome(store, "req-1800", "alpha-7b")["task"] == '{"nested": true}'  # kept as its JSON text
    assert _outcome(store, "req-2600", "alpha-7b")["latency_ms"] == 12.5
    assert _outcome(store, "req-2599", "alpha-7b")["latency_ms"] is None
    assert sorted({row[3] for row in outcomes}) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_cut_last_line_costs_two_polars_reads(files, monkeypatch) -> None:
    """The common bad line is the last one (the writer died mid-line): the reader does not read the file line by
    line for it, nor retry it with other type inference, but reads all other lines with polars at once."""
    from router import readers, schemas

    reads: list[int | None] = []
    real_read = pl.read_ndjson

    def counted(source, *args, **kwargs):
        reads.append(kwargs.get("infer_schema_length"))
        return real_read(source, *args, **kwargs)

    monkeypatch.setattr(pl, "read_ndjson", counted)
    n = readers.JSONL_INFER_ROWS + 500
    text = "\n".join(json.dumps(files.log_record(i)) for i in range(n)) + "\n" + json.dumps(files.log_record(n))[:30]
    df, rejects = readers.read_jsonl(files.raw("cut.jsonl", text), (*schemas.LOGS.required, *schemas.LOGS.optional))
    assert reads == [readers.JSONL_INFER_ROWS, readers.JSONL_INFER_ROWS]  # the whole file, then all but the last line
    assert df.height == n and df[readers.ROW].to_list() == list(range(1, n + 1))
    assert rejects[readers.ROW].to_list() == [n + 1]
    assert rejects["reason"][0].startswith("invalid JSON (truncated line?)")


def test_logs_timestamps_in_odd_zones(files, ingest, store, reconciled) -> None:
    stamps = ["2025-03-01T12:00:00Z", "2025-03-01T17:45:00+05:45", "2025-03-01T08:30:00.250-03:30",
              "2025-03-02T02:00:00+14:00", "2025-03-01 12:00:00", "2025-03-01T12:00:00-0000",
              "2025-03-01T12:00:00.000001Z", "2025-03-01T12:00Z", "2025-03-01",
              "01/03/2025 12:00", "2025-02-30T10:00:00Z", "", None]
    bad = reconciled(ingest("logs", files.logs("zones.jsonl", [files.log_record(i, ts=t) for i, t in
                                                                  enumerate(stamps)])))
    assert bad.select("row_number", "reason").rows() == [
        (10, "ts is not an ISO-8601 timestamp; missing or unparseable ts (ISO-8601 expected)"),
        (11, "ts is not an ISO-8601 timestamp; missing or unparseable ts (ISO-8601 expected)"),
        (12, "missing or unparseable ts (ISO-8601 expected)"),
        (13, "missing or unparseable ts (ISO-8601 expected)"),
    ]
    ts = dict(zip(*table(store, "outcomes").select("sample_key", "ts").to_dict().values(), strict=True))
    noon = datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert [ts[f"req-{i}"] for i in range(8)] == [
        noon, noon, datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC), noon, noon, noon,  # naive = UTC
        datetime(2025, 3, 1, 12, 0, 0, 1, tzinfo=UTC), noon]  # "Z" with a fraction; "Z" without seconds
    assert ts["req-8"] == datetime(2025, 3, 1, tzinfo=UTC)


def test_fast_utc_pass_agrees_with_the_polars_format_it_precedes() -> None:
    """The DuckDB first pass (``utc_stamps``) may only parse "...Z" stamps to the instant polars' format gives, and
    must leave to the later passes what it refuses: checked on seeded stamps with out-of-range fields."""
    rng = np.random.default_rng(7)
    n = 20_000

    def field(width: int, high: int) -> np.ndarray:
        return np.char.zfill(rng.integers(0, high + 1, n).astype(str), width)

    years = np.where(rng.random(n) < 0.5, field(4, 9999), rng.choice(["0000", "1900", "1970", "2024", "2100"], n))
    stamps = np.char.add(np.char.add(np.char.add(np.char.add(np.char.add(years, "-"), field(2, 14)), "-"),
                                     field(2, 32)), "T")
    seconds = field(2, 61)
    stamps = np.char.add(np.char.add(np.char.add(np.char.add(np.char.add(stamps, field(2, 25)), ":"),
                                                 field(2, 61)), ":"), seconds)
    digits = rng.integers(0, 9, n)  # 0: no fraction; 7 and 8 digits are the fast pass's to refuse
    fraction = np.array(["." + "".join(rng.choice(list("0123456789"), k)) if k else "" for k in digits])
    # Edge stamps a random draw rarely makes: hour 24 (DuckDB alone reads "24:00:00" as the next midnight), leap
    # days and seconds; then what the later passes decide.
    edges = ["2025-03-01T24:00:00Z", "2025-03-01T24:00:00.000Z", "2025-03-01T23:59:60Z", "2024-02-29T00:00:00Z",
             "2100-02-29T00:00:00Z", "2000-02-29T23:59:59.999999Z", "0000-01-01T00:00:00Z", "2025-00-10T00:00:00Z"]
    rest = ["", "2025-03-01T12:00Z", None]
    text = pl.Series("ts", np.char.add(np.char.add(stamps, fraction), "Z").tolist() + edges + rest)
    digits = np.concatenate([digits, np.zeros(len(edges), dtype=digits.dtype)])
    seconds = np.concatenate([seconds, [e[17:19] for e in edges]])
    n += len(edges)
    fast = coercion.utc_stamps(text)
    slow = text.str.to_datetime(coercion.UTC_FORMAT, strict=False, time_unit="us").dt.replace_time_zone("UTC")
    assert fast.dtype == pl.Datetime("us", "UTC") and fast.len() == text.len()
    parsed = fast.is_not_null()
    assert (fast.filter(parsed) == slow.filter(parsed)).all()  # same instant wherever the fast pass parses
    assert slow.filter(parsed).null_count() == 0  # never accepts what polars refuses
    # What polars parses and the fast pass leaves: 7+ fraction digits, and second 60 (polars: the next minute).
    left = (slow.is_not_null() & ~parsed).arg_true().to_numpy()
    assert left.size > 0 and left.max() < n and ((digits[left] >= 7) | (seconds[left] == "60")).all()
    assert 3_000 < parsed.sum() < n  # the sample holds many valid stamps, and many invalid ones
    # The whole chain gives what polars' format alone gave on the sample; a stamp without seconds is left to the
    # offset-aware pass, as before.
    value, bad = coercion.as_timestamp(text.to_frame(), "ts")
    assert value.head(n).equals(slow.head(n), check_names=False, null_equal=True)
    assert bad.head(n).to_list() == slow.head(n).is_null().to_list()
    at_edges = value.slice(n - len(edges), len(edges))
    assert at_edges.is_null().to_list() == [True, True, False, False, True, False, False, True]
    assert at_edges.gather([2, 3, 5]).to_list() == [  # the leap second is the next minute, as polars reads it
        datetime(2025, 3, 2, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC),
        datetime(2000, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)]
    assert value.tail(3).to_list() == [None, datetime(2025, 3, 1, 12, tzinfo=UTC), None]
    assert bad.tail(3).to_list() == [False, False, False]  # empty and missing are not "unparseable" here


def test_naive_stamps_without_seconds_are_read_as_utc_like_those_with_an_offset() -> None:
    """ISO-8601 may leave out the seconds: accepted with an offset (`12:00Z`), so naive (`12:00`, `12:00` after a
    space, as spreadsheet exports write it) too, and a file mixing shapes loses none of them; what is not a time
    stays unparseable."""
    text = pl.Series("ts", ["2025-03-01T12:00", "2025-03-01 12:00", "2025-03-01T12:00Z", "2025-03-01 12:00:30",
                            "2025-03-01T13:00+01:00", "2025-03-01T12", "2025-03-01 25:00"])
    noon = datetime(2025, 3, 1, 12, tzinfo=UTC)
    expected = [noon, noon, noon, noon.replace(second=30), noon, None, None]
    # in any order: the offset-aware pass infers one format per call, from the first stamp it can read
    for order in (range(7), reversed(range(7)), [4, 0, 3, 2, 1, 5, 6], [3, 4, 6, 1, 2, 0, 5]):
        order = list(order)
        value, bad = coercion.as_timestamp(text.gather(order).to_frame(), "ts")
        assert value.to_list() == [expected[i] for i in order], order
        assert bad.to_list() == [expected[i] is None for i in order], order


def test_logs_duplicate_request_ids_within_and_across_files(files, ingest, store, reconciled) -> None:
    records = [files.log_record(0), files.log_record(1), files.log_record(0, quality=0.9),
               files.log_record(0, model="gamma")]  # same request answered by two models: not a duplicate
    bad = reconciled(ingest("logs", files.logs("dups1.jsonl", records)))
    assert bad.select("row_number", "row_key", "reason").rows() == [
        (3, "req-0 / alpha-7b", "duplicate (request_id, model) within file (first at row 1)")]
    assert _outcome(store, "req-0", "alpha-7b")["quality"] == 0.5
    # Next file: req-1 again, identical (ok, not new) and req-0 with another cost (a conflict).
    result = ingest("logs", files.logs("dups2.jsonl", [files.log_record(1), files.log_record(0, cost_usd=9.0)]))
    bad = reconciled(result)
    assert (result.rows_ok, result.rows_new, result.rows_quarantined) == (1, 0, 1)
    assert bad["reason"][0].startswith("conflicts with the stored record")
    assert table(store, "outcomes").height == 3


def test_a_bad_first_copy_of_a_key_does_not_cost_a_good_later_copy_its_place(files, ingest, store,
                                                                             reconciled) -> None:
    """Within a file, the first copy of a request that fails another check is quarantined for that reason, and the
    next copy that passes every check is the one stored (a repeat of a *stored* copy is still a duplicate)."""
    records = [files.log_record(0, quality=1.5), files.log_record(0, quality=0.25), files.log_record(0, quality=0.75),
               files.log_record(1, cost_usd=-1.0), files.log_record(1, cost_usd=-2.0)]
    result = ingest("logs", files.logs("bad_first.jsonl", records))
    bad = reconciled(result)
    assert (result.rows_in, result.rows_ok, result.rows_quarantined) == (5, 1, 4)
    reasons = dict(zip(bad["row_number"].to_list(), bad["reason"].to_list()))
    assert sorted(reasons) == [1, 3, 4, 5]
    assert reasons[3] == "duplicate (request_id, model) within file (first at row 2)"
    assert "duplicate" not in reasons[1] + reasons[4] + reasons[5]
    assert _outcome(store, "req-0", "alpha-7b")["quality"] == 0.25
    assert table(store, "outcomes").height == 1


def test_conflicts_name_the_run_of_the_stored_row_they_contradict(files, ingest, store, reconciled) -> None:
    """The ingest finds the stored keys once and reads the matched rows back by rowid: each conflict must name
    the run of the very row it contradicts, identical repeats must be skipped, new rows stored once."""
    run_a = ingest("logs", files.logs("a.jsonl", [files.log_record(i) for i in range(0, 40)]))
    run_b = ingest("logs", files.logs("b.jsonl", [files.log_record(i) for i in range(40, 80)]))
    assert (run_a.rows_new, run_b.rows_new) == (40, 40)
    batch = ([files.log_record(i) for i in range(0, 80, 7)]  # identical repeats from both runs
             + [files.log_record(i, cost_usd=9.0) for i in (3, 45, 78)]  # conflicts with run a, b, b
             + [files.log_record(i) for i in range(80, 85)])  # new
    result = ingest("logs", files.logs("c.jsonl", batch))
    bad = reconciled(result)
    assert (result.rows_ok, result.rows_new, result.rows_quarantined) == (len(batch) - 3, 5, 3)
    assert bad.select("row_key", "reason").rows() == [
        (f"req-{i} / alpha-7b", f"conflicts with the stored record from ingest run {run.run_id}")
        for i, run in ((3, run_a), (45, run_b), (78, run_b))]
    assert table(store, "outcomes").height == 85
    assert _outcome(store, "req-45", "alpha-7b")["cost_usd"] == pytest.approx(0.046)


def test_logs_gzip_and_broken_gzip(files, ingest, rejected, reconciled) -> None:
    result = ingest("logs", files.logs("day.jsonl.gz", n=3))
    assert reconciled(result).height == 0 and result.rows_new == 3
    rejected("logs", files.raw("broken.jsonl.gz", b"\x1f\x8b\x08 not really"), "not a readable gzip file")
    data = gzip.compress(json.dumps(files.log_record(7)).encode())
    rejected("logs", files.raw("cut.parquet.gz", data[:-6]), "not a readable gzip file")


def test_truncated_parquet(files, rejected) -> None:
    whole = files.logs("whole.parquet", n=20).read_bytes()
    rejected("logs", files.raw("cut.parquet", whole[: len(whole) // 2]), "cannot read as Parquet")


# --------------------------------------------------------------------------------------------- backlog
def test_backlog_csv_with_embedded_newlines_quotes_and_commas(files, ingest, store, reconciled) -> None:
    text = ('query_id,prompt,submitted_at,task\n'
            'q1,"Line one\nline two\r\nline three",2025-01-01T00:00:00+01:00,chat\n'
            'q2,"She said ""hi"", then left",,\n'
            'q3,"comma, inside",,code\n')
    bad = reconciled(ingest("backlog", files.raw("tricky.csv", text)))
    assert bad.height == 0
    backlog = table(store, "backlog").sort("query_id")
    prompts = dict(zip(*table(store, "prompts").select("prompt_id", "text").to_dict().values(), strict=True))
    assert [prompts[p] for p in backlog["prompt_id"]] == [
        "Line one\nline two\r\nline three", 'She said "hi", then left', "comma, inside"]
    assert backlog["submitted_at"][0] == datetime(2024, 12, 31, 23, tzinfo=UTC)
    assert backlog["task"].to_list() == ["chat", None, "code"]


def test_backlog_csv_with_unbalanced_quote_or_ragged_row(files, rejected) -> None:
    rejected("backlog", files.raw("quote.csv", 'query_id,prompt\nq1,"never closed\nq2,x\n'), "cannot parse as CSV")
    rejected("backlog", files.raw("ragged.csv", "query_id,prompt\nq1,a,b,c\n"), "cannot parse as CSV")


def test_backlog_duplicate_query_ids_within_and_across_files(files, ingest, store, reconciled) -> None:
    records = [files.backlog_record(0), files.backlog_record(1), files.backlog_record(0, prompt="other")]
    bad = reconciled(ingest("backlog", files.backlog("b1.csv", records)))
    assert bad.select("row_number", "row_key", "reason").rows() == [
        (3, "q-0", "duplicate query_id within file (first at row 1)")]
    result = ingest("backlog", files.backlog("b2.jsonl", [files.backlog_record(1),
                                                          files.backlog_record(0, prompt="changed")]))
    bad = reconciled(result)
    assert (result.rows_ok, result.rows_new, result.rows_quarantined) == (1, 0, 1)
    assert bad["reason"][0].startswith("query_id already stored with another prompt")
    assert table(store, "backlog").height == 2


@pytest.mark.parametrize(
    ("columns", "needles"),
    [({"query_id": "q", "text": "p"}, ["missing columns ['prompt']", "unexpected columns ['text']"]),
     ({"prompt": "p"}, ["missing columns ['query_id']"])],
    ids=["renamed", "missing"],
)
def test_backlog_wrong_columns(files, rejected, columns, needles) -> None:
    rejected("backlog", files.write("wrong.csv", [columns, columns]), *needles)


# ------------------------------------------------------------------------------------- files & folders
@pytest.mark.parametrize(
    ("kind", "name", "data", "needle"),
    [
        ("routerbench", "zero.csv", b"", "empty file (0 bytes)"),
        ("logs", "zero.jsonl", b"", "empty file (0 bytes)"),
        ("backlog", "zero.parquet", b"", "empty file (0 bytes)"),
        ("routerbench", "header_only.csv", ",sample_id,prompt,eval_name,m|total_cost,m\n", "no rows"),
        ("logs", "blank_lines.jsonl", "\n \n\n", "empty file"),
        ("backlog", "header_only.csv.gz", gzip.compress(b"query_id,prompt\n"), "no rows"),
        ("backlog", "empty.csv.gz", gzip.compress(b""), "empty file"),
    ],
)
def test_empty_and_zero_byte_files(files, rejected, kind, name, data, needle) -> None:
    rejected(kind, files.raw(name, data), needle)


def test_empty_parquet_file(files, rejected) -> None:
    path = files.root / "empty.parquet"
    pl.DataFrame(schema={"query_id": pl.String, "prompt": pl.String}).write_parquet(path)
    rejected("backlog", path, "no rows")


@pytest.mark.parametrize("name", ["bench_train.csv.gz", "bench_train.parquet.gz", "bench_train.pkl"])
def test_gzipped_and_other_formats_read_the_same(files, ingest, store, name) -> None:
    result = ingest("routerbench", files.routerbench(name, n=3))
    assert (result.rows_in, result.rows_ok, result.rows_quarantined) == (9, 9, 0)
    assert sorted(set(table(store, "outcomes")["sample_key"])) == ["code.1#1", "math.0#0", "math.2#2"]


def test_unsupported_file_named_explicitly(files) -> None:
    path = files.raw("notes.txt", "hello")
    with pytest.raises(IngestError, match=r"notes\.txt: logs files must be one of \.jsonl, \.ndjson, \.parquet"):
        discover([path], "logs")
    with pytest.raises(IngestError, match="no such file or folder"):
        discover([files.root / "missing.jsonl"], "logs")


def test_directory_with_mixed_formats(files, ingest, store) -> None:
    files.logs("landing/a.jsonl", n=2)
    files.write("landing/nested/b.parquet", [files.log_record(i) for i in range(2, 4)])
    files.write("landing/nested/c.ndjson.gz", [files.log_record(i) for i in range(4, 5)])
    files.backlog("landing/queries.csv", n=2)
    files.raw("landing/readme.md", "# notes")
    files.raw("landing/.hidden.jsonl", "not even json")
    found, notes = discover([files.root / "landing"], "logs")
    assert [p.relative_to(files.root / "landing").as_posix() for p in found] == [
        "a.jsonl", "nested/b.parquet", "nested/c.ndjson.gz"]
    assert sorted(n.split(":")[0].rsplit("/", 1)[-1] for n in notes) == ["queries.csv", "readme.md"]
    for path in found:
        ingest("logs", path)
    assert sorted(table(store, "outcomes")["sample_key"]) == [f"req-{i}" for i in range(5)]
    found, _ = discover([files.root / "landing"], "backlog")  # the same folder, read as backlog: CSV + JSONL
    assert [p.name for p in found] == ["a.jsonl", "b.parquet", "c.ndjson.gz", "queries.csv"]


def test_symlinks_inside_the_folder_are_followed_and_escaping_ones_skipped(files, ingest, store, tmp_path) -> None:
    folder = files.root / "drop"
    inside = files.logs("drop/real/a.jsonl", n=2)
    outside = files.logs("elsewhere/secret.jsonl", records=[files.log_record(9, prompt="secret")])
    (folder / "link_inside.jsonl").symlink_to(inside)
    (folder / "link_outside.jsonl").symlink_to(Path("..") / "elsewhere" / "secret.jsonl")  # relative, via ..
    (folder / "dir_outside").symlink_to(outside.parent, target_is_directory=True)
    (folder / "dangling.jsonl").symlink_to(folder / "gone.jsonl")
    found, notes = discover([folder], "logs")
    assert sorted(p.name for p in found) == ["a.jsonl", "link_inside.jsonl"]
    assert sum("resolves outside" in n for n in notes) == 2
    assert any("dangling.jsonl: symlink is broken" in n for n in notes)
    results = [ingest("logs", p) for p in found]
    assert sorted(r.status for r in results) == ["ingested", "skipped"]  # same bytes through the link
    assert "secret" not in table(store, "prompts")["text"].to_list()


def test_path_traversal_cannot_reach_outside_the_folder(files, ingest, store) -> None:
    folder = files.root / "landing"
    files.logs("landing/ok.jsonl", n=1)
    files.logs("private/keys.jsonl", records=[files.log_record(5, prompt="private")])
    (folder / "sub").mkdir()
    (folder / "sub" / "up.jsonl").symlink_to(Path("..") / ".." / "private" / "keys.jsonl")
    # A folder named with .. components is resolved first: its files are still the only ones read.
    found, notes = discover([folder / "sub" / ".."], "logs")
    assert [p.name for p in found] == ["ok.jsonl"]
    assert any("up.jsonl: resolves outside" in n for n in notes)
    for path in found:
        ingest("logs", path)
    assert table(store, "prompts")["text"].to_list() == ["Log prompt 0"]


def test_file_changing_while_read(files, ingest, counts, monkeypatch) -> None:
    ingest("backlog", files.backlog("first.jsonl", n=1))
    path = files.logs("growing.jsonl", n=2)
    real_read = ingest_mod.read_any

    def read_then_append(p: Path, *args):
        out = real_read(p, *args)
        with p.open("a") as fh:  # the writer appends a line while we validate
            fh.write(json.dumps(files.log_record(3)) + "\n")
        return out

    monkeypatch.setattr(ingest_mod, "read_any", read_then_append)
    before = counts()
    with pytest.raises(IngestError, match="file changed while it was being read; nothing stored") as info:
        ingest("logs", path)
    assert str(path) in str(info.value)
    assert counts() == before
    monkeypatch.undo()
    assert ingest("logs", path).rows_new == 3  # once complete, it goes in whole


def test_pickle_that_is_not_a_routerbench_frame(files, rejected) -> None:
    rejected("routerbench", files.raw("list.pkl", pickle.dumps([1, 2, 3])), "pickle holds a list")
    rejected("routerbench", files.raw("junk.pkl", b"\x80\x05not a pickle"), "cannot unpickle")
    frame = pd.DataFrame({"sample_id": ["s"], "prompt": ["p"], "eval_name": ["e"], "m": [np.float64(1.0)]})
    rejected("routerbench", files.raw("nocost.pkl", pickle.dumps(frame)), "score columns without a", "['m']")


@pytest.mark.parametrize("name", ["row.jsonl", "row.csv", "row.parquet", "row_pieces.jsonl", "row.json"])
def test_a_column_named_like_the_row_number_is_refused_by_name(files, rejected, name) -> None:
    """``_row`` numbers the rows inside the readers: a file with its own ``_row`` column is refused with that
    name, by every reader and path (polars' JSONL reader, and line by line after a bad line), never a crash."""
    records = [files.log_record(i, _row=i) for i in range(2)]
    if name == "row_pieces.jsonl":
        path = files.raw(name, "\n".join([json.dumps(r) for r in records] + ['{"request_id": "cut']) + "\n")
    elif name == "row.json":
        path = files.raw(name, json.dumps(records))
    else:
        path = files.write(name, records)
    rejected("logs", path, "'_row' is reserved")


def test_repeated_pickle_columns_and_duration_columns_are_refused_by_name(files, rejected) -> None:
    frame = pd.DataFrame([["s", "p", "e", 1.0, 0.1]], columns=["sample_id", "prompt", "eval_name", "m", "m"])
    rejected("routerbench", files.raw("dupcol.pkl", pickle.dumps(frame)), "column names repeated: 'm'")
    logs = pl.DataFrame([files.log_record(i) for i in range(2)]).with_columns(
        pl.duration(milliseconds=pl.col("cost_usd") * 1000).alias("cost_usd"))
    path = files.root / "duration.parquet"
    logs.write_parquet(path)
    rejected("logs", path, "wrong column types", "'cost_usd' is Duration")


@pytest.mark.parametrize("name", ["surrogates.jsonl", "surrogates.json"])
def test_escapes_of_half_a_surrogate_pair_quarantine_their_line(files, ingest, store, reconciled, name) -> None:
    """``\\ud800`` or ``\\udc00`` alone is no character: its line is quarantined with that reason (polars read the
    first as NUL, Python's json as text the store cannot encode). A real pair and an escaped NUL are text."""
    values = ["bad \\ud800 x", "m\\udc00", "pair \\ud83d\\ude00", "nul \\u0000 x", "end \\ud83d"]
    lines = [json.dumps(files.log_record(i)).replace(f'"Log prompt {i}"', f'"{v}"') for i, v in enumerate(values)]
    text = "\n".join(lines) + "\n" if name.endswith(".jsonl") else "[" + ",".join(lines) + "]"
    bad = reconciled(ingest("logs", files.raw(name, text)))
    assert bad.select("row_number", "reason").rows() == [
        (n, "a \\u escape is half of a surrogate pair (no character)") for n in (1, 2, 5)]
    stored = dict(store.execute(
        "SELECT o.sample_key, p.text AS prompt FROM outcomes o JOIN prompts p USING (prompt_id)").fetchall())
    assert stored == {"req-2": "pair \U0001F600", "req-3": "nul \x00 x"}


def test_non_object_and_blank_lines_in_jsonl(files, ingest, reconciled) -> None:
    text = json.dumps(files.log_record(0)) + "\n\n" + "42\n" + "null\n" + json.dumps(files.log_record(1)) + "\n"
    result = ingest("logs", files.raw("odd.jsonl", text))
    bad = reconciled(result)
    assert (result.rows_in, result.rows_ok) == (4, 2)
    assert bad.select("row_number", "reason").rows() == [
        (3, "line is a JSON int, not an object"), (4, "line is a JSON NoneType, not an object")]


def _with_repeat(record: dict, spelling: str, value: object) -> str:
    """``record`` as a JSON line with one more member, ``spelling: value``, written last (a key's second copy)."""
    return json.dumps(record)[:-1] + f", {spelling}: {json.dumps(value)}}}"


@pytest.mark.parametrize("name", ["fast.jsonl", "pieces.jsonl", "lines.jsonl", "array.json"])
def test_a_record_that_repeats_a_key_is_quarantined_naming_the_key(files, ingest, store, reconciled, monkeypatch,
                                                                     name) -> None:
    """An object naming a key twice (``{"prompt": "first", "prompt": "second"}``) was read silently, polars keeping
    the first value and Python's json the last. It is quarantined with the key, on every path: polars' fast path,
    pieces polars accepts around a bad line, line by line, a JSON array. A key spelled with an escape or with
    blanks before its colon, or repeated with a null, is a repeat; nested objects are kept (as JSON text), so a
    repeat inside one counts too. Values that read like keys, explicit nulls and other lines are not touched."""
    from router import readers

    lines = [
        json.dumps(files.log_record(0)),
        _with_repeat(files.log_record(1, prompt="first"), '"prompt"', "second"),
        json.dumps(files.log_record(2, prompt='say "prompt": now', task=None, latency_ms=None)),
        json.dumps(files.log_record(3, prompt=": starts with a colon", task="prompt")),
        _with_repeat(files.log_record(4, prompt="first"), '"pr\\u006fmpt"', "second"),
        _with_repeat(files.log_record(5), '"cost_usd" ', 0.5),
        _with_repeat(files.log_record(6, task="first"), '"task"', None),
        json.dumps(files.log_record(7)),
    ]
    repeats = [(2, 'duplicate key "prompt"'), (5, 'duplicate key "prompt"'), (6, 'duplicate key "cost_usd"'),
               (7, 'duplicate key "task"')]
    stored = ["req-0", "req-2", "req-3", "req-7"]
    if name != "fast.jsonl":  # polars refuses nested values: such a file is read in pieces
        lines += [json.dumps(files.log_record(8, task={"a": 1, "b": 2})),
                  json.dumps(files.log_record(9, task="x")).replace('"task": "x"', '"task": {"a": 1, "a": 2}')]
        repeats.append((10, 'duplicate key "a"'))
        stored.append("req-8")
    if name == "array.json":
        text = "[\n" + ",\n".join(lines) + "\n]"
    else:
        text = "\n".join(lines) + "\n"
        if name != "fast.jsonl":  # a cut last line: polars refuses the file as a whole
            text += json.dumps(files.log_record(10))[:30]
            repeats.append((len(lines) + 1, "invalid JSON"))
    if name == "pieces.jsonl":
        monkeypatch.setattr(readers, "JSONL_PIECE_LINES", 2)  # pieces of more than 2 lines are read by polars
    if name == "fast.jsonl":
        monkeypatch.setattr(readers, "_read_jsonl_pieces", None)  # polars reads the whole file at once

    result = ingest("logs", files.raw(name, text))
    bad = reconciled(result)
    assert [(row, reason.split(" (")[0]) for row, reason in bad.select("row_number", "reason").rows()] == repeats
    assert (result.rows_in, result.rows_ok) == (len(repeats) + len(stored), len(stored))
    assert '"first"' in bad["raw"][0] and '"second"' in bad["raw"][0]  # the line as written, both values
    outcomes = table(store, "outcomes").sort("sample_key")
    assert outcomes["sample_key"].to_list() == stored
    assert _outcome(store, "req-2", "alpha-7b")["task"] is None
    assert _outcome(store, "req-3", "alpha-7b")["task"] == "prompt"
    prompts = set(table(store, "prompts")["text"])
    assert {'say "prompt": now', ": starts with a colon"} <= prompts and not {"first", "second"} & prompts
    if name != "fast.jsonl":
        assert json.loads(_outcome(store, "req-8", "alpha-7b")["task"]) == {"a": 1, "b": 2}


def test_a_backlog_query_that_repeats_a_key_is_quarantined(files, ingest, store, reconciled) -> None:
    lines = [json.dumps(files.backlog_record(0)),
             _with_repeat(files.backlog_record(1, prompt="first"), '"prompt"', "second"),
             _with_repeat(files.backlog_record(2), '"query_id"', "q-other"),
             json.dumps(files.backlog_record(3))]
    bad = reconciled(ingest("backlog", files.raw("repeats.jsonl", "\n".join(lines) + "\n")))
    assert bad.select("row_number", "reason").rows() == [(2, 'duplicate key "prompt"'),
                                                         (3, 'duplicate key "query_id"')]
    assert sorted(table(store, "backlog")["query_id"]) == ["q-0", "q-3"]


def test_only_lines_that_can_repeat_a_key_are_parsed_again(files, monkeypatch) -> None:
    """polars' fast path rules out repeated keys from the file's bytes: explicit nulls on every line, and a value
    that reads like keys, cost no line a parse by Python; a key written twice or spelled with an escape does."""
    from router import readers, schemas

    checked: list[int] = []
    real = readers._lines_that_may_repeat_a_key

    def spied(raw: bytes, df: pl.DataFrame, newlines=None):
        lines = real(raw, df, newlines)
        checked.extend(lines.tolist())
        return lines

    monkeypatch.setattr(readers, "_lines_that_may_repeat_a_key", spied)
    monkeypatch.setattr(readers, "_read_jsonl_pieces", None)
    lines = [json.dumps(files.log_record(i, task=None, latency_ms=None)) for i in range(200)]  # explicit nulls
    lines[50] = _with_repeat(files.log_record(50, task=None), '"task"', "late")
    lines[120] = _with_repeat(files.log_record(120), '"mod\\u0065l"', "other")
    lines[160] = json.dumps(files.log_record(160, prompt='"latency_ms": 5, "task": null'))
    df, rejects = readers.read_jsonl(files.raw("nulls.jsonl", "\n".join(lines) + "\n"),
                                     (*schemas.LOGS.required, *schemas.LOGS.optional))
    assert sorted(checked) == [50, 120]
    assert rejects.select(readers.ROW, "reason").rows() == [(51, 'duplicate key "task"'),
                                                            (121, 'duplicate key "model"')]
    assert df.height == 198 and 51 not in df[readers.ROW] and 121 not in df[readers.ROW]
    assert df.filter(pl.col(readers.ROW) == 161)["prompt"].item() == '"latency_ms": 5, "task": null'


# ------------------------------------------------------------------------------ JSONL type inference window
def test_jsonl_column_first_seen_after_the_inference_window_is_kept(files, ingest, store, monkeypatch) -> None:
    """Large JSONL files are typed from their first lines; a column that starts later is still read whole."""
    from router import readers

    monkeypatch.setattr(readers, "JSONL_INFER_ROWS", 20)
    records = [files.log_record(i) for i in range(60)]
    for i in range(45, 60):  # latency_ms and tokens appear only in the last lines
        records[i].update(latency_ms=100.0 + i, tokens_in=i, tokens_out=2 * i)
    result = ingest("logs", files.logs("late.jsonl", records))
    assert (result.rows_ok, result.rows_quarantined) == (60, 0)
    stored = table(store, "outcomes").sort("sample_key")
    late = stored.filter(pl.col("latency_ms").is_not_null())
    assert sorted(late["sample_key"].to_list()) == sorted(f"req-{i}" for i in range(45, 60))
    assert late.filter(pl.col("sample_key") == "req-50").row(0, named=True)["tokens_out"] == 100


def test_jsonl_value_of_another_type_after_the_inference_window(files, ingest, store, monkeypatch) -> None:
    from router import readers

    monkeypatch.setattr(readers, "JSONL_INFER_ROWS", 20)
    records = [files.log_record(i) for i in range(60)]
    records[50]["quality"] = "n/a"  # numbers for 50 lines, then text
    records[55]["task"] = "math"  # null (absent) for 55 lines, then text
    result = ingest("logs", files.logs("mixed.jsonl", records))
    assert (result.rows_ok, result.rows_quarantined) == (59, 1)
    assert result.reasons == {"quality is not a number": 1}
    assert table(store, "outcomes").filter(pl.col("sample_key") == "req-55")["task"].to_list() == ["math"]


def test_per_row_queries_come_back_in_the_frame_order_even_if_a_scan_reorders(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timestamp pass relies on DuckDB scanning a registered frame in its order; should a plan ever return
    the rows in another order, ``storage.per_row`` realigns them on the key."""
    from router import storage

    stamps = pl.Series("ts", [f"2025-03-{d:02d}T12:00:00Z" for d in range(1, 29)] + ["2025-02-30T12:00:00Z"])
    expected_ts = [datetime(2025, 3, d, 12, tzinfo=UTC) for d in range(1, 29)] + [None]
    reversed_scans: list[str] = []
    relation = storage.relation

    class Reversed:
        def __init__(self, rel: object, name: str) -> None:
            self.rel, self.name = rel, name

        def pl(self) -> pl.DataFrame:
            reversed_scans.append(self.name)
            return self.rel.pl().reverse()

    for reorder in (False, True):
        if reorder:
            monkeypatch.setattr(storage, "relation", lambda con, name, params=None: Reversed(relation(con, name,
                                                                                                       params), name))
        assert coercion.utc_stamps(stamps).to_list() == expected_ts
    assert reversed_scans == ["ingest/utc_stamps"]


def test_prompt_ids_are_the_sha256_of_the_utf8_text_as_duckdb_computed_them() -> None:
    """Stores built before ids were hashed in polars hold DuckDB's ``sha256()`` digests: the two must agree on
    every kind of text (empty, whitespace, non-ASCII, control characters, long, null), across chunks."""
    import hashlib

    import duckdb

    rng = np.random.default_rng(7)
    alphabet = list("abc xyz\n\t\"'\\") + ["é", "ß", "日本", "🙂", "\u0000", "\u200b", "\r\n"]
    texts = ["", " ", "\n", "a", "é", "🙂" * 3, "x" * 100_000, "['a', 'b']", None]
    texts += ["".join(rng.choice(alphabet, size=int(n))) for n in rng.integers(1, 400, size=500)]
    half = len(texts) // 2
    records = pl.concat([pl.DataFrame({"prompt": texts[:half]}, schema={"prompt": pl.String}),
                         pl.DataFrame({"prompt": texts[half:]}, schema={"prompt": pl.String})], rechunk=False)
    assert records.n_chunks() == 2
    ids = ingest_mod.prompt_ids(records)
    expected = [None if t is None else hashlib.sha256(t.encode()).hexdigest()[:32] for t in texts]
    assert ids.to_list() == expected
    with duckdb.connect() as con:
        by_duckdb = con.execute("SELECT substr(sha256(t), 1, 32) FROM unnest($texts) AS u(t)",
                                {"texts": texts}).fetchall()
    assert [row[0] for row in by_duckdb] == expected
