"""``routerctl drift``: the latest night's drift checks (``router.drift``), read from the store.

Always exits 0 when the store can be read (a breach is a warning, shown by ``routerctl doctor`` too); 2 when there
is no store, 3 while another process holds it."""

from __future__ import annotations

import json

import typer

from router.cli.app import app, console, existing_store, print_table


@app.command()
def drift(as_json: bool = typer.Option(False, "--json", help='print {"night", "breached", "checks": [{"name", '
                                       '"statistic", "threshold", "breached", "detail"}]}')) -> None:
    """The latest night's drift checks: tonight's prompts against the champion's training prompts (embedding
    two-sample test, task mix) and logged outcomes against its predictions (quality error, cost ratio per model).
    A skipped check has a null statistic and the reason in its detail."""
    from rich.markup import escape
    from rich.table import Table

    from router import drift as checks
    from router.storage import open_store, schema_version

    s = existing_store()
    with open_store(s, read_only=True) as con:
        result = checks.latest(con) if schema_version(con) >= checks.SCHEMA_VERSION else None
    data = result.as_dict() if result else {"night": None, "breached": False, "checks": []}
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    if result is None:
        console.print("No drift checks recorded yet (they run in the nightly's drift step).")
        return
    title = f"drift checks, night {result.night}: " + (f"BREACHED ({', '.join(result.fired)})" if result.breached
                                                        else "no breach")
    table = Table("check", "statistic", "threshold", "breached", "detail", title=title, title_justify="left")
    for c in result.checks:
        detail = c.detail.get("skipped") and f"skipped: {c.detail['skipped']}" or \
            ", ".join(f"{k}={v}" for k, v in c.detail.items() if k != "champion")
        table.add_row(c.name, "–" if c.statistic is None else f"{c.statistic:.4g}", f"{c.threshold:.4g}",
                      "[bold red]yes[/]" if c.breached else "no", escape(str(detail)))
    print_table(table)
