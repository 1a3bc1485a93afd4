"""``routerctl doctor``: the store's integrity checks as a table (see ``router.doctor``).

Exit 0 when nothing is damaged (``pending`` work for the next step is not a failure), 1 on any ``problem``, 2 when
there is no store, 3 while another process holds it."""

from __future__ import annotations

import json

import typer

from router.cli.app import app, console, existing_store, fail, print_table
from router.errors import CHECK_FAILED


@app.command()
def doctor(
    registry: bool = typer.Option(True, "--registry/--no-registry",
                                  help="check decisions' model versions against the MLflow registry"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON instead of a table"),
) -> None:
    """Check the store: schema version, orphan rows, duplicate keys, embedding coverage, backlog to route,
    decisions' model versions, a challenger to gate, ingest runs reconcile, quarantine counts, the latest night's
    drift checks.

    Each check is ok, pending (work the next nightly step does), warning (the latest night's data drifted; not a
    failure), problem (damage) or info. Exits 1 on a problem,
    2 if there is no store, 3 while another process holds it."""
    from rich.markup import escape
    from rich.table import Table

    from router.doctor import INFO, OK, PENDING, WARNING, run_checks

    s = existing_store()
    report = run_checks(s, check_registry=registry)
    if as_json:
        console.print_json(json.dumps(report.as_dict(), default=str))
    else:
        table = Table("check", "status", "detail", title=f"routerctl doctor: {report.store}", title_justify="left")
        style = {OK: "green", INFO: "cyan", PENDING: "yellow", WARNING: "magenta"}
        for c in report.checks:
            table.add_row(c.name, f"[{style.get(c.status, 'bold red')}]{c.status}[/]", escape(c.detail))
        print_table(table)
    if not report.ok:
        fail(f"{len(report.problems)} problem(s): " + "; ".join(c.name for c in report.problems), CHECK_FAILED)
