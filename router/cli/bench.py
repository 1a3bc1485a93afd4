"""``routerctl bench``: the speed and scale benchmarks (``router.bench``), each a ratio against a same-run floor."""

from __future__ import annotations

import typer

from enum import Enum

from router.bench import BENCHES, SIZES
from router.cli.app import app, console, fail

Size = Enum("Size", {name: name for name in SIZES}, type=str)
Bench = Enum("Bench", {name: name for name in BENCHES}, type=str)


@app.command()
def bench(
    size: Size = typer.Option("full", help="small: CI smoke, ~2 min; full: ~15 min on 2 cores"),
    only: list[Bench] = typer.Option(None, "--only", help="run only this bench (repeatable)"),
) -> None:
    """Run the benchmarks; print one line per figure; write $ROUTER_HOME/reports/bench/latest.json."""
    from router.bench import run_all
    from router.cli.app import settings

    s = settings()
    try:
        run_all(size.value, [b.value for b in only] if only else None, s.reports / "bench" / "latest.json",
                echo=lambda line: console.print(line, soft_wrap=True, highlight=False, markup=False))
    except ValueError as exc:
        fail(f"{exc} (benches: {', '.join(BENCHES)})")
