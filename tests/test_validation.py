"""The two validation engines: the suite's expectations compiled to polars, and Great Expectations itself.

The compiled checks decide every record of a large batch, so they must mean what GX means: each test below
runs both on the same records and compares their verdicts record by record.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import polars as pl
import pytest

from router import validation
from router.validation import INDEX, SuiteSpec, compile_suite, load_suite, validate

BAD = "caf\ufffd"  # U+FFFD: what invalid UTF-8 becomes when decoded leniently


def _logs_frame() -> pl.DataFrame:
    """Log records hitting every expectation of the logs suite, at and around each bound, plus good ones."""
    ts = datetime(2026, 11, 1, tzinfo=UTC)
    good = {"sample_key": "r", "ts": ts, "prompt": "p", "model": "m", "task": "t", "quality": 0.5, "cost_usd": 0.01,
            "latency_ms": 10.0, "tokens_in": 3, "tokens_out": 4}
    variants = [
        {}, {"sample_key": None}, {"sample_key": ""}, {"sample_key": "k" * 512}, {"sample_key": "k" * 513},
        {"ts": None}, {"prompt": None}, {"prompt": ""}, {"prompt": BAD}, {"prompt": "ok \ufffd inside"},
        {"model": None}, {"model": ""}, {"model": "m" * 257}, {"model": BAD},
        {"quality": 0.0}, {"quality": 1.0}, {"quality": -0.0001}, {"quality": 1.0001}, {"quality": None},
        {"cost_usd": None}, {"cost_usd": -1e-12}, {"cost_usd": 1000.0}, {"cost_usd": 1000.5},
        {"cost_usd": math.inf}, {"latency_ms": -1.0}, {"latency_ms": 0.0}, {"latency_ms": None},
        {"tokens_in": -1}, {"tokens_out": -5}, {"tokens_in": None}, {"task": BAD}, {"task": None},
        {"sample_key": None, "prompt": None, "quality": 7.0},  # several reasons on one record
    ]
    rows = [{**good, **v, "sample_key": v.get("sample_key", f"r{i}")} for i, v in enumerate(variants)]
    frame = pl.DataFrame(rows, schema={"sample_key": pl.String, "ts": pl.Datetime("us", "UTC"), "prompt": pl.String,
                                       "model": pl.String, "task": pl.String, "quality": pl.Float64,
                                       "cost_usd": pl.Float64, "latency_ms": pl.Float64, "tokens_in": pl.Int64,
                                       "tokens_out": pl.Int64})
    return frame.with_row_index(INDEX).with_columns(pl.col(INDEX).cast(pl.Int64))


def _pairs(issues: pl.DataFrame) -> set[tuple[int, str]]:
    return set(issues.select(INDEX, "reason").iter_rows())


def test_compiled_checks_agree_with_gx_on_every_record() -> None:
    frame = _logs_frame()
    compiled, uncompiled = compile_suite(load_suite("logs"), frame.schema)
    assert uncompiled == [] and len(compiled) == len(load_suite("logs").expectations)

    report = validate("logs", frame, gx_sample_rows=0)  # GX sees every record
    assert report.gx_rows == frame.height and report.disagreements == 0
    by_gx = validation._run_gx("logs", frame.select(INDEX, *load_suite("logs").columns), None)
    by_compiled = validation._run_compiled(frame, compiled)
    assert set(by_gx.iter_rows()) == set(by_compiled.iter_rows())

    reasons = {r for _, r in _pairs(report.issues)}
    failing = {i for i, _ in _pairs(report.issues)}
    # Every variant but the good record and the in-range/boundary ones fails, with its own reason.
    assert failing == set(range(frame.height)) - {0, 3, 14, 15, 18, 21, 25, 26, 29, 31}
    assert {"missing request_id", "prompt is not valid UTF-8", "quality outside [0, 1]",
            "cost_usd negative, infinite or over $1000", "negative tokens_out", "task is not valid UTF-8"} <= reasons
    last = report.issues.filter(pl.col(INDEX) == frame.height - 1)["reason"].to_list()
    assert last == ["missing request_id", "missing prompt", "quality outside [0, 1]"]  # suite order


def test_large_batches_send_a_sample_to_gx_and_every_flagged_record_is_caught() -> None:
    n = 5_000
    frame = pl.DataFrame({
        INDEX: pl.int_range(0, n, eager=True).cast(pl.Int64),
        "query_id": [f"q{i}" if i % 997 else None for i in range(n)],  # 6 records lack a query_id
        "prompt": [f"prompt {i}" for i in range(n)],
        "task": ["t"] * n,
    })
    report = validate("backlog", frame, gx_sample_rows=500)
    assert report.gx_rows == 500 and report.evaluated == n and report.disagreements == 0
    missing = sorted(i for i, r in _pairs(report.issues) if r == load_suite("backlog").expectations[0]["reason"])
    assert missing == [i for i in range(n) if i % 997 == 0]
    again = validate("backlog", frame, gx_sample_rows=500)
    assert _pairs(again.issues) == _pairs(report.issues)  # seeded sample: the same verdicts
    sample = validation._gx_sample(frame, pl.Series(missing, dtype=pl.Int64), 500, 42)
    assert sample.height == 500 and set(missing) <= set(sample[INDEX].to_list())


def test_gx_failures_win_and_disagreements_are_counted(monkeypatch, caplog) -> None:
    """A compiled check that is wrong (here: one that never fails) cannot let a bad record through: GX's
    verdict on the records it saw is applied too, and the disagreement is logged and counted."""
    broken = dict(validation.COMPILED)
    known, _ = broken["expect_column_values_to_not_be_null"]
    broken["expect_column_values_to_not_be_null"] = (known, lambda col, kw, dtype: pl.lit(False))
    monkeypatch.setattr(validation, "COMPILED", broken)
    frame = _logs_frame()
    report = validate("logs", frame, gx_sample_rows=0)
    nulls = {i for i, r in _pairs(report.issues) if r.startswith("missing")}
    assert {1, 5, 6, 10, 19, 32} <= nulls
    assert report.disagreements >= 6
    assert "GX and the compiled checks disagree" in caplog.text


def test_expectations_without_a_compiled_form_make_gx_check_every_record(tmp_path, monkeypatch) -> None:
    suite = {"name": "custom", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "prompt"}, "reason": "no prompt"},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "task", "value_set": ["a", "b"]},
         "reason": "unknown task"},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0, "mostly": 0.5},
         "reason": "negative n"},
    ]}
    (tmp_path / "custom_suite_test.json").write_text(json.dumps(suite))
    monkeypatch.setattr(validation, "SUITES_DIR", tmp_path)
    load_suite.cache_clear()
    try:
        spec = load_suite("custom_suite_test")
        frame = pl.DataFrame({INDEX: [0, 1, 2, 3], "prompt": ["x", None, "y", "z"], "task": ["a", "b", "c", "a"],
                              "n": [1, -1, 2, 3]}, schema_overrides={INDEX: pl.Int64})
        compiled, uncompiled = compile_suite(spec, frame.schema)
        assert list(compiled) == [0] and uncompiled == [1, 2]  # unknown type; unknown argument (mostly)
        report = validate("custom_suite_test", frame, gx_sample_rows=2)
        assert report.gx_rows == 4  # not a sample: GX alone checks expectations 1 and 2
        # "mostly": one record in four is negative, which GX accepts (75% ≥ 50%); the task is checked by GX.
        assert _pairs(report.issues) == {(1, "no prompt"), (2, "unknown task")}
    finally:
        load_suite.cache_clear()


def test_an_expectation_gx_cannot_run_is_an_error_not_a_pass(tmp_path, monkeypatch) -> None:
    """A suite expectation naming a column the batch lacks raises inside GX (its result nests the error under the
    failing metric's id): validation fails, it does not pass every record (docs/data.md: an error inside GX rolls
    the file back), and the error quotes GX's message, not its tracebacks."""
    suite = {"name": "broken", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "prompt"}, "reason": "no prompt"},
        {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "queryid", "max_value": 8},
         "reason": "query id over 8 characters"},
    ]}
    (tmp_path / "broken_suite_test.json").write_text(json.dumps(suite))
    monkeypatch.setattr(validation, "SUITES_DIR", tmp_path)
    load_suite.cache_clear()
    try:
        frame = pl.DataFrame({INDEX: [0, 1], "prompt": ["x", "y"], "query_id": ["a-very-long-query-id", "b"]},
                             schema_overrides={INDEX: pl.Int64})
        with pytest.raises(RuntimeError) as raised:
            validate("broken_suite_test", frame, gx_sample_rows=2)
        # GX's own message, once, with the expectation and its column; not the tracebacks GX keeps beside it
        assert str(raised.value) == ("expectation expect_column_value_lengths_to_be_between on column 'queryid' "
                                     'could not run: Error: The column "queryid" in BatchData does not exist.')
    finally:
        load_suite.cache_clear()


def test_compiler_refuses_what_it_cannot_translate() -> None:
    spec = SuiteSpec("x", (
        {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "n", "min_value": 1}, "reason": "a"},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "s", "min_value": 1}, "reason": "b"},
        {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "s", "regex": "(?<=x)y"},
         "reason": "c"},  # look-behind: Python re only
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "absent"}, "reason": "d"},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "n", "min_value": 0, "max_value": 5, "strict_max": True}, "reason": "e"},
    ))
    compiled, uncompiled = compile_suite(spec, pl.Schema({"n": pl.Int64, "s": pl.String}))
    assert uncompiled == [0, 1, 2, 3] and list(compiled) == [4]
    flags = pl.DataFrame({"n": [0, 4, 5, 6, None]}).select(compiled[4].fill_null(False))
    assert flags.to_series().to_list() == [False, False, True, True, False]


def test_a_slow_warm_up_is_waited_for_not_duplicated(tmp_path) -> None:
    docs = tmp_path / "docs"
    threads = [validation.prepare(docs, "logs") for _ in range(3)]
    report = validate("logs", _logs_frame(), docs)
    for t in threads:
        t.join(timeout=120)
    assert report.disagreements == 0
    assert validation._checkpoint(docs, "logs") is validation._checkpoint(docs, "logs")
    assert not (docs / "validations").exists()  # validate() records the result; publish_docs() renders it
    assert validation.publish_docs(docs) == 1
    assert len(list((docs / "validations" / "logs").rglob("*.html"))) == 1


def test_data_docs_are_gx_pages_with_templates_compiled_once_per_process(tmp_path, monkeypatch) -> None:
    """The Data Docs views share one compiled-template cache: after the warm-up a build compiles no template,
    and every page is the HTML GX's own views render from the same document (but for the element ids and
    times GX draws at each render)."""
    import copy
    import re

    import jinja2
    from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView

    from router import gx_views

    monkeypatch.setattr(gx_views, "TEMPLATES", gx_views.MemoryBytecodeCache())
    docs = tmp_path / "docs"
    monkeypatch.setattr(validation, "_VALIDATORS", {})  # a fresh GX context, configured with these views
    validation.prepare(docs, "logs").join(timeout=120)
    n_templates = len(gx_views.TEMPLATES)
    assert n_templates == len(DefaultJinjaPageView().env.list_templates()) > 20
    assert gx_views.precompile() == n_templates  # once per cache: the next warm-ups compile nothing

    compiled: list[str] = []
    rendered: list[tuple[type, dict, str]] = []
    real_compile = jinja2.Environment.compile

    def counting_compile(self, source, name=None, *args, **kwargs):
        compiled.append(name)
        return real_compile(self, source, name, *args, **kwargs)

    def capture(cls):
        real_render = cls.render

        def render(self, document, *args, **kwargs):
            original = copy.deepcopy(document)  # GX's render fills the document in
            html = real_render(self, document, *args, **kwargs)
            rendered.append((cls, original, html))
            return html
        return render

    monkeypatch.setattr(jinja2.Environment, "compile", counting_compile)
    for cls in (gx_views.SharedTemplatesPageView, gx_views.SharedTemplatesIndexPageView):
        monkeypatch.setattr(cls, "render", capture(cls))
    validate("logs", _logs_frame(), docs)
    assert validation.publish_docs(docs) == 1
    assert compiled == []
    assert len(gx_views.TEMPLATES) == n_templates
    assert [cls for cls, _, _ in rendered].count(gx_views.SharedTemplatesIndexPageView) == 1
    assert len(rendered) == 3  # the suite page, the validation page, the index

    def drawn_removed(html: str) -> str:
        html = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", html)
        return re.sub(r"\d{8}T\d{6}\.\d{6}Z", "<time>", html)

    monkeypatch.setattr(jinja2.Environment, "compile", real_compile)
    for cls, document, html in rendered:
        gx_view = DefaultJinjaIndexPageView if cls is gx_views.SharedTemplatesIndexPageView else DefaultJinjaPageView
        assert drawn_removed(html) == drawn_removed(gx_view().render(document))
    page = next((docs / "validations" / "logs").rglob("*.html")).read_text()
    assert "values must be" in page or "expect_column_values_to_be_between" in page


@pytest.mark.parametrize("kind", ["routerbench", "logs", "backlog"])
def test_every_shipped_suite_compiles_completely(kind) -> None:
    """The shipped suites use only compiled types, so a large file is checked everywhere by the compiled form."""
    from router.ingest import BACKLOG_COLUMNS, RECORD_COLUMNS

    schema = pl.Schema(BACKLOG_COLUMNS if kind == "backlog" else RECORD_COLUMNS)
    _, uncompiled = compile_suite(load_suite(kind), schema)
    assert uncompiled == []
