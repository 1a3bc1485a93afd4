"""``routerctl doctor``: the store's integrity checks as a table; exit 1 on any problem (see ``router.doctor``)."""

from __future__ import annotations

import json

import typer

from router.cli.app import app, console, fail, settings

EXIT_PROBLEMS = 1
EXIT_CANNOT_CHECK = 2


@app.command()
def doctor(
    registry: bool = typer.Option(True, "--registry/--no-registry",
                                  help="check decisions' model versions against the MLflow registry"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON instead of a table"),
) -> None:
    """Check the store: schema version, orphan rows, embedding coverage, decisions' model versions, ingest runs
    reconcile, quarantine counts. Exits 1 on a problem, 2 if the store cannot be opened."""
    from rich.markup import escape
    from rich.table import Table

    from router.doctor import INFO, OK, run_checks
    from router.storage import StoreError

    s = settings()
    try:
        report = run_checks(s, check_registry=registry)
    except StoreError as exc:
        fail(str(exc), code=EXIT_CANNOT_CHECK)
    if as_json:
        console.print_json(json.dumps(report.as_dict(), default=str))
    else:
        table = Table("check", "status", "detail", title=f"routerctl doctor: {report.store}", title_justify="left")
        style = {OK: "green", INFO: "cyan"}
        for c in report.checks:
            table.add_row(c.name, f"[{style.get(c.status, 'bold red')}]{c.status}[/]", escape(c.detail))
        console.print(table)
    if not report.ok:
        fail(f"{len(report.problems)} problem(s): " + "; ".join(c.name for c in report.problems), EXIT_PROBLEMS)
