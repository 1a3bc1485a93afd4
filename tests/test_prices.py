"""Prices that change (router.prices): the price table's ingest, the factors on effective dates, and routing and
scenarios rescaling the cost predictions by them."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import TwoModelRouter, embed_backlog, table
from router import prices as pricing
from router.routing import route_backlog, stage_pending
from router.scenarios import run_scenarios

DAY = date(2026, 12, 5)
HEADER = "model,effective_from,pricing,input_per_1k,output_per_1k,per_call,currency\n"


# -------------------------------------------------------------------------------------------------- ingest
def test_a_price_file_is_stored_and_its_bad_rows_quarantined_with_reasons(store, ingest, reconciled, files) -> None:
    path = files.raw("prices.csv", HEADER + "\n".join([
        "gpt-4,2023-03-14,per_token,0.03,0.06,,USD",       # 1 good
        "claude,2024-01-01,per_call,,,0.002,",             # 2 good (currency defaults to USD)
        "gpt-4,2023-03-14,per_token,0.03,0.07,,USD",       # 3 same key as row 1
        "x1,2024-02-30,per_call,,,0.002,",                  # 4 no such date
        "x2,2024-01-01,per_hour,,,0.002,",                  # 5 unknown pricing
        "x3,2024-01-01,per_token,0.01,,,",                  # 6 half a per-token price
        "x4,2024-01-01,per_call,,,-1,",                     # 7 negative
        "x5,2024-01-01,per_call,0.01,,0.1,EUR",             # 8 per-token field on a per-call price, and EUR
        ",2024-01-01,per_call,,,0.1,",                       # 9 no model
    ]) + "\n")
    result = ingest("prices", path)
    assert (result.rows_in, result.rows_ok, result.rows_new, result.rows_quarantined) == (9, 2, 2, 7)
    quarantined = reconciled(result)
    reasons = dict(zip(quarantined["row_number"].to_list(), quarantined["reason"].to_list(), strict=True))
    assert reasons == {
        3: "duplicate (model, effective_from) within file (first at row 1)",
        4: "missing effective_from, or not a YYYY-MM-DD date",
        5: "pricing is neither per_call nor per_token",
        6: "a per_token price needs input_per_1k and output_per_1k (and no per_call)",
        7: "per_call below 0 or above 10,000",
        8: "a per_call price needs per_call (and no per-token fields); currency is not USD",
        9: "missing model",
    }
    raw = json.loads(quarantined.filter(pl.col("row_number") == 4)["raw"][0])
    assert raw["effective_from"] == "2024-02-30" and raw["model"] == "x1"  # the row as the file gave it
    assert sorted(table(store, "prices")["model"].to_list()) == ["claude", "gpt-4"]


def test_stored_prices_and_idempotent_reingest(store, ingest, files, counts) -> None:
    rows = [{"model": "gpt-4", "effective_from": "2023-03-14", "pricing": "per_token", "input_per_1k": 0.03,
             "output_per_1k": 0.06},
            {"model": "claude", "effective_from": "2024-01-01", "pricing": "per_call", "per_call": 0.002}]
    first = ingest("prices", files.write("prices.jsonl", rows))
    assert (first.status, first.rows_new, first.rows_quarantined) == ("ingested", 2, 0)
    stored = table(store, "prices").sort("model")
    assert stored.select("model", "pricing", "input_per_1k", "output_per_1k", "per_call", "currency").rows() == [
        ("claude", "per_call", None, None, 0.002, "USD"), ("gpt-4", "per_token", 0.03, 0.06, None, "USD")]
    assert stored["effective_from"].to_list() == [date(2024, 1, 1), date(2023, 3, 14)]
    before = counts()
    assert ingest("prices", files.write("prices.jsonl", rows)).status == "skipped"  # same bytes
    assert counts() == before

    # The same rows in another file (a JSON array): counted as good, nothing new; a changed price for a stored
    # (model, effective_from) is quarantined and the stored price stands; a new effective date is a new row.
    again = [*rows, {**rows[1], "per_call": 0.001}, {**rows[1], "effective_from": "2025-01-01", "per_call": 0.001}]
    path = files.raw("prices.json", json.dumps([again[0], again[2], again[3]]))
    result = ingest("prices", path)
    assert (result.rows_ok, result.rows_new, result.rows_quarantined) == (2, 1, 1)
    assert list(result.reasons) == [f"conflicts with the stored price of this model and effective_from from ingest "
                                    f"run {first.run_id} (a new price takes a new effective_from)"]
    claude = table(store, "prices").filter(pl.col("model") == "claude").sort("effective_from")
    assert claude["per_call"].to_list() == [0.002, 0.001]
    history = store.sql("SELECT model, effective_from, superseded_on FROM price_history "
                        "WHERE model = 'claude'").fetchall()
    assert history == [("claude", date(2024, 1, 1), date(2025, 1, 1)), ("claude", date(2025, 1, 1), None)]


def test_a_json_file_that_is_not_an_array_is_refused(rejected, files) -> None:
    rejected("prices", files.raw("prices.json", '{"model": "gpt-4"}'), "expected a JSON array of objects")
    rejected("prices", files.raw("wide.csv", "model,effective_from\ngpt-4,2024-01-01\n"), "missing columns ['pricing']")


def test_routerctl_ingest_prices_and_prices(cli, files, store) -> None:
    store.close()  # the commands open the store themselves
    path = files.raw("prices.csv", HEADER + f"m1,2024-01-01,per_call,,,0.02,\nm1,{date.today()},per_call,,,0.01,\n"
                     f"m2,2024-01-01,per_token,0.01,0.02,,\nm2,{date.today() + timedelta(days=3)},per_call,,,9,\n")
    done = cli("ingest", "prices", path)
    assert done.exit_code == 0, done.output
    assert "ingested" in done.output
    listed = cli("prices", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["champion"] is None and data["training_cut"] is None  # no champion: against the earliest prices
    by = {f["model"]: f for f in data["factors"]}
    assert by["m1"]["factor"] == pytest.approx(0.5) and by["m2"]["factor"] == 1.0
    assert by["m2"]["current"]["pricing"] == "per_token"  # the per-call price is three days away
    assert data["label"] == "m1:0.5"  # the served model's prices param: only the factors that are not 1
    later = json.loads(cli("prices", "--json", "--on", str(date.today() + timedelta(days=3))).output)
    assert {f["model"]: f["note"] for f in later["factors"]}["m2"].startswith("pricing changed")
    table = cli("prices")
    assert table.exit_code == 0 and "m1" in table.output and "0.5" in table.output
    assert "prices=m1:0.5" in table.output
    assert cli("prices", "--on", "tomorrow").exit_code == 2


def test_routerctl_prices_piped_in_80_columns_prints_every_value_whole(cli, files, store, monkeypatch) -> None:
    """Piped (a job log, ``| grep``) at 80 columns, ``routerctl prices`` cuts no value with "…" and wraps none:
    each model's row is one line holding its whole name, date in force, pricing, prices, factor and note."""
    import re

    from router.cli.app import console

    store.close()  # the commands open the store themselves
    today = date.today()
    path = files.raw("prices.csv", HEADER + (
        "gpt-4-1106-preview,2024-01-01,per_token,0.03,0.06,,\n"
        f"gpt-4-1106-preview,{today},per_token,0.0075,0.015,,\n"
        "meta/llama-2-70b-chat,2023-11-30,per_call,,,0.0009,\n"
        f"claude-instant-v1,2024-02-29,per_call,,,0.0123456,\nclaude-instant-v1,{today + timedelta(days=3)},"
        "per_token,0.001,0.002,,\n"))
    assert cli("ingest", "prices", path).exit_code == 0
    monkeypatch.setattr(console, "width", 80)  # rich's width for output that is not a terminal (no COLUMNS)
    for day in (today, today + timedelta(days=3)):  # in three days claude-instant-v1's row has a note
        expected = {f["model"]: f for f in json.loads(cli("prices", "--json", "--on", day).output)["factors"]}
        assert len(expected) == 3
        listed = cli("prices", "--on", day)  # its stdout is not a terminal
        assert listed.exit_code == 0, listed.output
        assert "…" not in listed.output, listed.output
        lines = listed.output.splitlines()
        header = next(line for line in lines if "model" in line and "┃" in line)
        for column in ("model", "in force since", "pricing", "current price", "training price", "factor", "note"):
            assert re.search(rf"┃ +{re.escape(column)} +┃", header), (column, listed.output)
        for model, f in expected.items():
            row = next((line for line in lines if line.startswith(f"│ {model} ")), None)
            assert row is not None, listed.output
            cells = [c.strip() for c in row.split("│")[1:-1]]
            assert cells == [model, f["current"]["effective_from"], f["current"]["pricing"],
                             f"{f['current']['unit_price']:.6g}", f"{f['training']['unit_price']:.6g}",
                             f"{f['factor']:.4g}", f["note"]], listed.output
        assert lines[0].startswith(f"prices on {day} (no champion: each model's earliest price; per call, or USD "
                                   "per 1k tokens blended 3:1 input:output)")  # the title, on one line
        assert f"the param prices={json.loads(cli('prices', '--json', '--on', day).output)['label']} " in listed.output
    assert re.search(r"^│ gpt-4-1106-preview +│ " + str(today), listed.output, re.M)
    assert re.search(r"^│ claude-instant-v1 +│ " + f"{today + timedelta(days=3)} +│ per_token +│ 0.00125 ",
                     listed.output, re.M)
    assert re.search(r"^│ meta/llama-2-70b-chat +│ 2023-11-30 +│ per_call +│ 0.0009 ", listed.output, re.M)
    assert "pricing changed" in expected["claude-instant-v1"]["note"]


def test_served_price_factors_read_back_the_label() -> None:
    """``serving.price_factors`` parses what ``PriceFactors.label`` writes (a model name may hold colons), leaves
    unnamed models at 1, and refuses what it cannot read."""
    from router.prices import Factor, PriceFactors
    from router.registry.serving import price_factors

    models = ["m1", "llama3:8b", "m3"]
    label = PriceFactors(date.today(), None, [Factor("llama3:8b", 0.25, None, None), Factor("m1", 1.0, None, None),
                                              Factor("m3", 3.0, None, None)]).label()
    assert label == "llama3:8b:0.25,m3:3"
    assert price_factors(label, models).tolist() == [1.0, 0.25, 3.0]
    assert price_factors("", models).tolist() == [1.0, 1.0, 1.0]
    assert price_factors(" m3:2 , ", models).tolist() == [1.0, 1.0, 2.0]
    assert price_factors("m1:0", models).tolist() == [0.0, 1.0, 1.0]  # a model that became free, as batch applies
    assert PriceFactors(date.today(), None, [Factor("m1", 0.0, None, None), Factor("m9", 2.0, None, None)]).label(
        models) == "m1:0"  # only the pool's models
    for bad, message in (("m1", "is not <model>:<factor>"), (":2", "is not <model>:<factor>"),
                         ("m9:2", "unknown model 'm9'"), ("m1:2,m1:3", "named twice"), ("m1:-1", "finite number ≥ 0"),
                         ("m1:nan", "finite number ≥ 0"), ("m1:inf", "finite number ≥ 0"),
                         ("m1:cheap", "finite number ≥ 0")):
        with pytest.raises(ValueError, match=message):
            price_factors(bad, models)


# ------------------------------------------------------------------------------------------------- factors
def _table(*rows: tuple) -> pl.DataFrame:
    """Price rows (model, effective_from, pricing, input_per_1k, output_per_1k, per_call)."""
    return pl.DataFrame(list(rows), schema={"model": pl.String, "effective_from": pl.Date, "pricing": pl.String,
                                            "input_per_1k": pl.Float64, "output_per_1k": pl.Float64,
                                            "per_call": pl.Float64}, orient="row")


def test_factors_follow_the_effective_dates(caplog: pytest.LogCaptureFixture) -> None:
    prices = _table(
        ("gpt-4", date(2023, 3, 14), "per_token", 0.03, 0.06, None),   # blended 0.0375 / 1k
        ("gpt-4", date(2026, 11, 1), "per_token", 0.01, 0.03, None),   # blended 0.015
        ("gpt-4", DAY + timedelta(days=1), "per_token", 0.001, 0.001, None),  # tomorrow: not in force yet
        ("claude", date(2024, 1, 1), "per_call", None, None, 0.002),
        ("claude", DAY, "per_call", None, None, 0.003),               # effective today: in force
        ("mixtral", date(2024, 1, 1), "per_call", None, None, 0.001),
        ("mixtral", date(2026, 12, 1), "per_token", 0.001, 0.001, None),  # changed kind: not comparable
        ("newcomer", date(2026, 12, 1), "per_call", None, None, 0.5),  # no price in the training data
    )
    models = ["gpt-4", "claude", "mixtral", "newcomer", "llama"]
    with caplog.at_level(logging.WARNING, logger="router.prices"):
        got = pricing.factors(prices, models, day=DAY, cut="2026-06-30")
    by = {f.model: f for f in got.factors}
    assert by["gpt-4"].factor == pytest.approx((0.75 * 0.01 + 0.25 * 0.03) / (0.75 * 0.03 + 0.25 * 0.06))
    assert by["gpt-4"].current["effective_from"] == "2026-11-01"  # not tomorrow's
    assert by["claude"].factor == pytest.approx(1.5)
    assert by["mixtral"].factor == 1.0 and "not comparable" in by["mixtral"].note
    assert by["newcomer"].factor == 1.0 and by["newcomer"].note == "no price in force in the training data"
    assert by["llama"].factor == 1.0 and by["llama"].current is None
    assert "newcomer" in caplog.text and "mixtral" in caplog.text
    np.testing.assert_allclose(got.vector(["llama", "claude"]), [1.0, 1.5])
    assert got.label() == f"claude:1.5,gpt-4:{by['gpt-4'].factor:.6g}"

    # The cut decides the training price: after the November price, gpt-4's factor is 1; undated training data
    # (no cut) is priced at the earliest price; a price the version recorded wins over the table.
    assert {f.model: f.factor for f in pricing.factors(prices, ["gpt-4"], day=DAY, cut="2026-11-02").factors} == {
        "gpt-4": 1.0}
    assert pricing.factors(prices, ["gpt-4"], day=DAY, cut=None).factors[0].training["effective_from"] == "2023-03-14"
    recorded = {"gpt-4": {"effective_from": "2020-01-01", "pricing": "per_token", "unit_price": 0.03}}
    assert pricing.factors(prices, ["gpt-4"], day=DAY, cut=None, recorded=recorded).factors[0].factor == \
        pytest.approx(0.015 / 0.03)
    # One day later, tomorrow's price is in force.
    later = pricing.factors(prices, ["gpt-4"], day=DAY + timedelta(days=1), cut=None).factors[0]
    assert later.factor == pytest.approx(0.001 / 0.0375)


def test_no_price_table_means_every_factor_is_one(store) -> None:
    got = pricing.factors(pricing.load_prices(store), ["a", "b"], day=DAY, cut=None)
    assert got.label() == "" and got.changed() == {} and got.vector(["a", "b"]).tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------------------- routing
@pytest.fixture
def backlog(store, ingest, files):  # noqa: ANN001, ANN201
    """Ten backlog queries: three hard for the cheap model, seven easy."""
    ingest("backlog", files.backlog(n=10))
    embed_backlog(store, hard=["q-0", "q-1", "q-2"])
    return store


def _route(store, factors=None):  # noqa: ANN001, ANN202
    return route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc", reward_param=0.05,
                         price_factors=factors)


def _decisions(store, policy: str) -> dict[str, str]:  # noqa: ANN001
    rows = store.execute("SELECT query_id, chosen_model FROM routing_decisions WHERE policy = ?", [policy]).fetchall()
    return dict(rows)


def test_a_price_cut_moves_decisions_to_the_cut_model(backlog, ingest, files) -> None:
    store = backlog
    # No price table: the factors change nothing, not even the policy key.
    empty = pricing.factors(pricing.load_prices(store), TwoModelRouter.models, day=DAY, cut=None)
    plain = _route(store, empty)
    assert plain.policy == "lambda=0.05" and plain.price_factors == {}
    base = _decisions(store, "lambda=0.05")
    assert len(base) == 10
    assert _route(store).routed == 0  # the same policy: nothing left to decide
    stored = store.execute("SELECT * EXCLUDE (decided_at) FROM routing_decisions ORDER BY query_id").fetchall()
    store.execute("DELETE FROM routing_decisions")
    assert _route(store).routed == 10  # routed without any price factor, as before prices existed: the same rows
    assert store.execute("SELECT * EXCLUDE (decided_at) FROM routing_decisions ORDER BY query_id").fetchall() == stored

    ingest("prices", files.raw("prices.csv", HEADER + "rich,2024-01-01,per_call,,,0.01,\n"
                               f"rich,{DAY},per_call,,,0.001,\n"
                               f"cheap,{DAY + timedelta(days=1)},per_call,,,0.000001,\n"))
    factors = pricing.factors(pricing.load_prices(store), TwoModelRouter.models, day=DAY, cut="2026-01-01")
    assert factors.changed() == {"rich": pytest.approx(0.1)}  # cheap's cut is tomorrow's
    cut = _route(store, factors)
    assert cut.policy == "lambda=0.05;prices=rich:0.1" and cut.price_factors == {"rich": pytest.approx(0.1)}
    after = _decisions(store, cut.policy)
    assert after.keys() == base.keys()  # every query decided again at the new prices, beside the old decisions
    share = {name: sum(m == "rich" for m in d.values()) / len(d) for name, d in (("before", base), ("after", after))}
    assert 0 < share["before"] < share["after"]
    assert all(after[q] == "rich" for q, m in base.items() if m == "rich")  # nothing moved away from the cut model
    spent = store.execute("SELECT sum(predicted_cost_usd) FILTER (WHERE chosen_model = 'rich') / "
                          "count(*) FILTER (WHERE chosen_model = 'rich') FROM routing_decisions WHERE policy = ?",
                          [cut.policy]).fetchone()[0]
    assert spent == pytest.approx(0.001)  # the stored predicted cost is the rescaled one

    # The price goes back to the training price: the first policy key again. Its old rows are older than the cut's,
    # so every query is decided again (its rows replaced, not duplicated) and the analysts' views follow.
    latest = "SELECT policy, count(*) FROM latest_decisions GROUP BY 1"
    assert store.execute(latest).fetchall() == [(cut.policy, 10)]
    back = _route(store, empty)
    assert (back.policy, back.routed) == ("lambda=0.05", 10)
    assert store.execute(latest).fetchall() == [("lambda=0.05", 10)]
    assert _decisions(store, "lambda=0.05") == base and _decisions(store, cut.policy) == after
    assert store.execute("SELECT count(*) FROM routing_decisions").fetchone()[0] == 20
    assert _route(store, empty).routed == 0  # newest already: nothing left to decide


def test_the_reward_is_part_of_the_policy_key(backlog) -> None:
    """The same parameter under the exponential reward is another policy (it chooses otherwise): routed, not taken
    for the linear reward's decisions."""
    store = backlog
    runs = {name: route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc",
                                reward_name=name, reward_param=0.08) for name in ("linear", "exponential")}
    assert {n: (r.policy, r.routed) for n, r in runs.items()} == {
        "linear": ("lambda=0.08", 10), "exponential": ("lambda=0.08;reward=exponential", 10)}
    chosen = {n: Counter(_decisions(store, r.policy).values()) for n, r in runs.items()}
    assert chosen == {"linear": {"cheap": 7, "rich": 3}, "exponential": {"rich": 10}}
    assert store.execute("SELECT DISTINCT reward, policy FROM latest_decisions").fetchall() == [
        ("exponential", "lambda=0.08;reward=exponential")]


def test_a_policy_routed_after_a_what_if_run_is_the_newest_again(backlog, tmp_path: Path) -> None:
    """The nightly's policy, then an analyst's what-if policy, then the nightly's again: the third run decides the
    backlog again, so `latest_decisions` shows one policy, the one routed last, for every query."""
    store = backlog
    runs = [route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc", reward_param=p)
            for p in (0.05, 10.0, 0.05)]
    assert [r.routed for r in runs] == [10, 10, 10]
    assert store.execute("SELECT policy, count(*) FROM latest_decisions GROUP BY 1").fetchall() == [("lambda=0.05", 10)]
    first = runs[0]
    assert _decisions(store, "lambda=0.05") != _decisions(store, "lambda=10")  # two policies that choose apart
    assert store.execute("SELECT count(*) FROM routing_decisions").fetchone()[0] == 20
    # a new query is decided alone under the newest policy; the others stay
    store.execute("INSERT INTO backlog SELECT * REPLACE ('q-new' AS query_id) FROM backlog WHERE query_id = 'q-0'")
    again = route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc", reward_param=0.05)
    assert again.routed == 1 and first.policy == again.policy
    # what-if scenarios still predict only what this version never decided, whatever the policy
    assert stage_pending(store, "enc", "1") == (0, 0)
    store.execute("DROP TABLE route_pending")

    # the night report's model mix counts each query once: tonight's policy, not every policy of the champion
    from dataclasses import asdict

    from router.night_report import write_night_report

    night = datetime(2026, 12, 5, 2)
    routing = {**asdict(again), "policy": {"kind": "lambda"}, "policy_key": again.policy}
    out = write_night_report(store, tmp_path / "reports", flow_run_id="night-1", started=night, night=night.date(),
                             ingest={}, validation={}, embed={}, train={"skipped": True}, promotion={"skipped": True},
                             routing=routing)
    text = (out / "report.md").read_text()
    table = text[text.index("All decisions of this champion under tonight's policy (`lambda=0.05`)"):]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    expected = dict(store.execute("SELECT chosen_model, count(*) FROM latest_decisions GROUP BY 1").fetchall())
    assert {r[1].strip(): int(r[2]) for r in rows} == expected and sum(expected.values()) == 11

    # a night with nothing left to route has no mean predicted quality: night.json says null, not NaN (not JSON)
    idle = route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc", reward_param=0.05)
    assert idle.routed == 0 and math.isnan(idle.predicted_quality)
    out = write_night_report(store, tmp_path / "reports", flow_run_id="night-2", started=night, night=night.date(),
                             ingest={}, validation={}, embed={}, train={"skipped": True}, promotion={"skipped": True},
                             routing={**asdict(idle), "policy": {"kind": "lambda"}, "policy_key": idle.policy})

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    data = json.loads((out / "night.json").read_text(), parse_constant=refuse)
    assert data["routing"]["predicted_quality"] is None and data["routing"]["routed"] == 0


def test_scenarios_rescale_the_costs(backlog, tmp_path: Path) -> None:
    store = backlog
    factors = pricing.PriceFactors(DAY, None, [pricing.Factor("rich", 0.1, None, None)])
    plain = run_scenarios(store, TwoModelRouter(), model_version="1", encoder="enc", reward_name="linear",
                          policy_param=None, reference_model="rich")
    cut = run_scenarios(store, TwoModelRouter(), model_version="1", encoder="enc", reward_name="linear",
                        policy_param=None, reference_model="rich", price_factors=factors)
    assert (plain.prices, cut.prices) == ("", "rich:0.1")
    stored = store.execute("SELECT scenario_run_id, list(DISTINCT prices) FROM routing_scenarios GROUP BY 1").fetchall()
    assert dict(stored) == {plain.run_id: [""], cut.run_id: ["rich:0.1"]}  # what each what-if assumed, per point
    assert store.execute("SELECT DISTINCT prices FROM latest_scenarios").fetchall() == [("rich:0.1",)]
    ref = {run.run_id: run.points.filter(pl.col("point") == "reference")["predicted_spend_usd"][0]
           for run in (plain, cut)}
    assert ref[cut.run_id] == pytest.approx(ref[plain.run_id] / 10)
    rich = {run.run_id: run.mix.filter((pl.col("model") == "rich") & (pl.col("point") == "sweep"))["queries"].sum()
            for run in (plain, cut)}
    assert rich[cut.run_id] > rich[plain.run_id]


# ------------------------------------------------------------------------------ a trained night (slow)
ROOT = Path(__file__).resolve().parents[1]
GPT4 = "gpt-4-1106-preview"
OLD_PRICES = HEADER + "\n".join([
    f"{GPT4},2023-11-06,per_token,0.01,0.03,,USD",
    "gpt-3.5-turbo-1106,2023-11-06,per_token,0.001,0.002,,USD",
    "claude-v2,2023-07-11,per_token,0.008,0.024,,USD",
    "mistralai/mixtral-8x7b-chat,2023-12-11,per_token,0.0006,0.0006,,USD",
]) + "\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A night on real RouterBench prompts (arc_challenge and mbpp, the 11 real models), production logs dated in
    November 2026 and a backlog, with a price table in the landing folder: trained, registered, made champion."""
    from datetime import UTC, datetime

    from router import nightly
    from router.dataset import model_pool
    from router.registry import promotion
    from router.settings import Settings
    from router.storage import open_store

    home = tmp_path_factory.mktemp("prices") / "ws"
    data = ROOT / "data"
    bench = home / "landing" / "routerbench"
    bench.mkdir(parents=True)
    for ev in ("arc_challenge", "mbpp"):
        for split, n in (("train", 40), ("test", 12)):
            df = pl.read_csv(data / "routerbench_subset" / f"{ev}_{split}.csv", infer_schema_length=0).head(n)
            df.select([c for c in df.columns if not c.endswith("|model_response")]).write_csv(bench / f"{ev}_{split}.csv")
    for kind, lines in (("logs", (data / "demo" / "logs.jsonl").read_text().splitlines()[:40]),
                        ("backlog", (data / "demo" / "backlog.jsonl").read_text().splitlines()[:60])):
        (home / "landing" / kind).mkdir(parents=True)
        (home / "landing" / kind / f"{kind}.jsonl").write_text("\n".join(lines) + "\n")
    (home / "landing" / "prices").mkdir(parents=True)
    (home / "landing" / "prices" / "prices.csv").write_text(OLD_PRICES)
    settings = Settings(home=home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        night = nightly.run_night(nightly.Night(settings, "night-prices", datetime.now(UTC).replace(tzinfo=None)))
        routed = night.results["route"]
        if promotion.champion_version(settings) is None:  # on tiny data a baseline may win the gate: promote by hand
            with open_store(settings, read_only=True) as con:
                promotion.promote(settings, 1, model_pool(con), reason="test setup")
            routed = nightly.route(settings)  # what the night would have routed with a champion
    return settings, night.results, routed


def _shares(settings, policy: str) -> dict[str, float]:  # noqa: ANN001
    from router.storage import open_store

    with open_store(settings, read_only=True) as con:
        rows = con.execute("SELECT chosen_model, count(*) FROM routing_decisions WHERE policy = ? GROUP BY 1",
                           [policy]).fetchall()
    total = sum(n for _, n in rows)
    return {m: n / total for m, n in rows}


@pytest.mark.slow
def test_a_price_cut_on_a_trained_night_shifts_traffic_to_the_cut_model(trained) -> None:  # noqa: ANN001
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    import flows.cli  # noqa: F401
    from router import nightly
    from router.cli import app
    from router.ingest import ingest_file
    from router.registry import promotion
    from router.storage import open_store

    settings, results, routed = trained
    ingested = [f for f in results["ingest"]["files"] if f["kind"] == "prices"]
    assert [(f["rows_new"], f["rows_quarantined"]) for f in ingested] == [(4, 0)]
    # The version records its data cut (the newest log date) and the prices in force then.
    loaded = promotion.load_version(settings, promotion.champion_version(settings))
    log_days = [json.loads(line)["ts"][:10] for line in
                (settings.landing("logs") / "logs.jsonl").read_text().splitlines()]
    assert loaded.data_cut == max(log_days)
    recorded = json.loads(loaded.training_prices)
    assert recorded[GPT4] == {"effective_from": "2023-11-06", "pricing": "per_token",
                              "unit_price": pytest.approx(0.75 * 0.01 + 0.25 * 0.03)}
    # Prices unchanged since training: every factor is 1 and the night's decisions kept the plain policy key.
    assert routed["price_factors"] == {} and routed["routed"] == 60
    with open_store(settings, read_only=True) as con:
        assert con.execute("SELECT DISTINCT policy FROM routing_decisions").fetchall() == [("quality_target=1",)]
    assert nightly.route(settings)["routed"] == 0

    before = nightly.route(settings, quality_target=0.9)
    today = datetime.now(UTC).date()
    cut = settings.workspace / "cut.csv"
    cut.write_text(HEADER + f"{GPT4},{today},per_token,0.001,0.003,,USD\n"
                   f"claude-v2,{today + timedelta(days=1)},per_token,0.0001,0.0001,,USD\n"
                   f"outsider-7b,2020-01-01,per_call,,,0.01,USD\noutsider-7b,{today},per_call,,,0.02,USD\n")
    with open_store(settings) as con:
        assert ingest_file(con, "prices", cut, settings).rows_new == 4
    listed = CliRunner().invoke(app, ["prices", "--json"], env={"ROUTER_HOME": str(settings.workspace)})
    assert listed.exit_code == 0, listed.output
    factors = {f["model"]: f["factor"] for f in json.loads(listed.output)["factors"]}
    assert factors[GPT4] == pytest.approx(0.1) and factors["claude-v2"] == 1.0  # claude's cut is tomorrow's
    assert factors["outsider-7b"] == pytest.approx(2.0)  # listed, but outside the champion's pool:
    assert json.loads(listed.output)["label"] == f"{GPT4}:0.1"  # not in the served model's param

    after = nightly.route(settings, quality_target=0.9)
    label = f"quality_target=0.9;prices={GPT4}:0.1"
    assert after["price_factors"] == {GPT4: pytest.approx(0.1)}
    assert after["routed"] == before["routed"] > 0  # the backlog decided again at today's prices
    old, new = _shares(settings, "quality_target=0.9"), _shares(settings, label)
    assert new.get(GPT4, 0.0) > old.get(GPT4, 0.0), (old, new)


@pytest.mark.slow
def test_the_distributed_route_decides_as_routerctl_route(trained, monkeypatch: pytest.MonkeyPatch,
                                                         prefect_ephemeral) -> None:  # noqa: ANN001
    """``flows.scale``'s route left to the champion routes with what ``routerctl route`` uses (``router.champion``):
    the quality target's calibrated parameter or mix, today's price factors, the same policy key and choices."""
    from flows import scale
    from router import champion, nightly
    from router.storage import open_store

    settings = trained[0]
    monkeypatch.setenv("ROUTER_HOME", str(settings.workspace))
    target = 0.85
    plan = champion.plan(settings, quality_target=target)
    assert plan is not None and plan.policy["kind"] == "quality_target"
    params = {plan.reward_param} | ({plan.mix[0]} if plan.mix else set())
    query = ("SELECT query_id, policy, reward_param, chosen_model FROM routing_decisions "
             "WHERE policy LIKE 'quality_target=0.85%' ORDER BY query_id")

    out = scale.run_route(chunks=3, n_workers=2, quality_target=target)
    assert out["routed"] == 60 and out["policy"]["kind"] == "quality_target"
    with open_store(settings) as con:
        distributed = con.execute(query).fetchall()
        factors = plan.price_factors(con).label()
        con.execute("DELETE FROM routing_decisions WHERE policy LIKE 'quality_target=0.85%'")
    assert {r[2] for r in distributed} <= params
    assert nightly.route(settings, quality_target=target)["routed"] == 60
    with open_store(settings, read_only=True) as con:
        single = con.execute(query).fetchall()
    assert distributed == single
    assert {r[1] for r in single} == {f"quality_target={target:g}" + (f";prices={factors}" if factors else "")}


def test_policy_runs_shows_both_parameters_of_a_mixed_policy(backlog) -> None:
    """A mixed policy routes a share of the prompts with a dearer parameter: policy_runs names both."""
    store = backlog
    route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc", reward_param=0.05,
                  quality_target=1.0, mix=(1e9, 0.5))
    route_backlog(store, TwoModelRouter(), model_version="1", router_name="r", encoder="enc", reward_param=0.05)
    dear = store.execute("SELECT count(*) FROM routing_decisions WHERE reward_param = 1e9").fetchone()[0]
    assert 0 < dear < 10
    rows = store.execute("SELECT policy, reward_param, dear_reward_param, dear_queries, queries FROM policy_runs "
                         "ORDER BY policy").fetchall()
    assert rows == [("lambda=0.05", 0.05, None, 0, 10), ("quality_target=1", 0.05, 1e9, dear, 10)]
