"""``routerctl prices``: every model's price in force today and the factor routing rescales its predicted costs by.

The factors are the champion's (its training data's prices, ``router.prices``); without a champion, against each
model's earliest price on record. Exits 0 when the store can be read; 2 when there is none, 3 while another
process holds it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import typer

from router.cli.app import app, console, existing_store, print_table


@app.command()
def prices(
    as_json: bool = typer.Option(False, "--json", help='print {"day", "champion", "training_cut", "factors": '
                                 '[{"model", "factor", "current", "training", "note"}], "label"} (label: the '
                                 'factors other than 1 as <model>:<factor>,..., the served model\'s prices param)'),
    on: str = typer.Option(None, "--on", help="the routing day (YYYY-MM-DD; default today, UTC)"),
) -> None:
    """Current prices (per call, or blended per 1,000 tokens) and the price factor of every model with a price."""
    from rich.markup import escape
    from rich.table import Table

    from router import prices as pricing
    from router.cli.app import fail
    from router.registry import promotion
    from router.storage import open_store, schema_version

    day = datetime.now(UTC).date()
    if on is not None:
        try:
            day = date.fromisoformat(on)
        except ValueError:
            fail(f"--on {on!r} is not a YYYY-MM-DD date")
    s = existing_store()
    with open_store(s, read_only=True) as con:
        table = pricing.load_prices(con) if schema_version(con) >= pricing.SCHEMA_VERSION else None
    version = promotion.champion_version(s)
    models = sorted(set(table["model"])) if table is not None else []
    # the champion's data cut, training prices and pool (its run params, read once with its artifacts)
    loaded = promotion.load_version(s, version) if version is not None and models else None
    result = pricing.factors(table, models, day=day, cut=loaded.data_cut if loaded else None,
                             recorded=pricing.recorded_prices(loaded.training_prices if loaded else None)
                             ) if models else None
    # The served model's param names the champion's pool only (it refuses any other model)
    label = result.label(loaded.pool.models if loaded else None) if result else ""
    data = {**(result.as_dict() if result else {"day": day.isoformat(), "training_cut": None, "factors": []}),
            "champion": version, "label": label}
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    if result is None:
        console.print("No prices stored (`routerctl ingest prices FILE`): every price factor is 1.")
        return
    against = f"champion v{version}" if version is not None else "no champion: each model's earliest price"
    out = Table(title=f"prices on {day} ({against}; per call, or USD per 1k tokens blended 3:1 input:output)",
                title_justify="left")
    # min_width: on a narrow terminal a date (YYYY-MM-DD) or per_token never wraps; piped, print_table prints
    # every row on one line at the table's natural width
    for header, min_width in (("model", None), ("in force since", 10), ("pricing", 9), ("current price", None),
                              ("training price", None), ("factor", None), ("note", None)):
        out.add_column(header, min_width=min_width)

    def price(p):  # noqa: ANN001, ANN202
        return f"{p['unit_price']:.6g}" if p else "–"

    for f in result.factors:
        out.add_row(escape(f.model), f.current["effective_from"] if f.current else "–",
                    f.current["pricing"] if f.current else "–", price(f.current), price(f.training),
                    f"{f.factor:.4g}", escape(f.note))
    print_table(out)
    if label:  # soft_wrap: the label stays on one line, whole, however long
        console.print(f"The served model routes at these prices with the param prices={escape(label)} "
                      "(or ROUTER_SERVE_PRICES where it is served).", soft_wrap=True)
