"""``routerctl bench``: the speed and scale benchmarks (``router.bench``), each a ratio against a same-run floor."""

from __future__ import annotations

import typer

from router.cli.app import app, console, fail


@app.command()
def bench(
    size: str = typer.Option("full", help="small (CI smoke, ~2 min) | full (~15 min on 2 cores)"),
    only: list[str] = typer.Option(None, "--only", help="run only this bench (repeatable): embed, route, "
                                   "route_attention, ingest_jsonl, ingest_parquet, nightly, train"),
) -> None:
    """Run the benchmarks; print one line per figure; write $ROUTER_HOME/reports/bench/latest.json."""
    from router.bench import BENCHES, SIZES, run_all
    from router.cli.app import settings

    if size not in SIZES:
        fail(f"--size must be one of {', '.join(SIZES)}")
    s = settings()
    try:
        run_all(size, only or None, s.reports / "bench" / "latest.json",
                echo=lambda line: console.print(line, soft_wrap=True, highlight=False, markup=False))
    except ValueError as exc:
        fail(f"{exc} (benches: {', '.join(BENCHES)})")
