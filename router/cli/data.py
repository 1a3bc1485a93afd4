"""Data commands: ingest, embed, status."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from router.cli.app import app, console, existing_store, err_console, fail, print_table, settings, writing
from router.errors import BAD_INPUT
from router.redact import mask_uri
from router.schemas import KINDS

#: The kinds of input ``routerctl ingest`` takes (``router.schemas.KINDS``), as a choice.
Kind = Enum("Kind", {k: k for k in KINDS}, type=str)


@app.command()
def ingest(
    kind: Kind = typer.Argument(..., help="kind of input"),
    paths: list[Path] = typer.Argument(..., help="files or folders (folders are searched recursively)"),
    source: str = typer.Option(None, help="RouterBench only: source label (default 'routerbench'), e.g. for 5-shot"),
    allow_pickle: bool = typer.Option(
        False, "--allow-pickle", help="unpickle .pkl files found inside folders (pickles run code: trusted files only)"
    ),
) -> None:
    """Ingest files into the store: validated, quarantined row by row, idempotent, one transaction per file."""
    from rich.progress import Progress

    from router.ingest import IngestError, check_source, discover, ingest_files
    from router.storage import open_store

    kind = kind.value
    try:
        check_source(kind, source)
    except IngestError as exc:
        fail(str(exc))
    s = settings()
    files, notes = discover(paths, kind, allow_pickle=allow_pickle or s.allow_pickle)
    for note in notes:
        err_console.print(f"[yellow]{escape(note)}[/]")
    if not files:
        fail(f"no {kind} files found in {', '.join(map(str, paths))}")
    table = Table("file", "status", "rows in", "ok", "new", "quarantined", title=f"ingest {kind}")
    errors = []
    with writing(s), open_store(s) as con, Progress(console=err_console, transient=True) as progress:
        task = progress.add_task(f"ingesting {kind}", total=len(files))
        for path, r in ingest_files(con, kind, files, s, source=source):
            if isinstance(r, IngestError):
                errors.append(str(r))
                table.add_row(escape(path.name), "[red]rejected[/]", "", "", "", "")
            else:
                table.add_row(escape(path.name), r.status, str(r.rows_in), str(r.rows_ok), str(r.rows_new),
                              str(r.rows_quarantined))
                for reason, count in list(r.reasons.items())[:5]:
                    table.add_row("", f"[yellow]{count}× {escape(reason)}[/]", "", "", "", "")
            progress.advance(task)
    print_table(table)
    for error in errors:
        err_console.print(f"[red]rejected:[/] {escape(error)}")
    if errors:
        raise typer.Exit(BAD_INPUT)


@app.command()
def embed() -> None:
    """Embed every stored prompt that has no vector for the configured encoder (cached; re-runs embed 0)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from router.embeddings import embed_missing
    from router.storage import open_store

    s = settings()
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with writing(s), open_store(s) as con, Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"embedding with {s.encoder}", total=None)
        result = embed_missing(con, s, progress=lambda done, total: progress.update(task, completed=done, total=total))
    console.print(
        f"embedded {result.embedded} prompts ({result.already} already cached) with {result.encoder} on "
        f"{result.device} in {result.seconds:.1f} s ({result.per_second:.1f} prompts/s)"
    )


@app.command()
def status() -> None:
    """Where the workspace is and what the store holds."""
    from router.storage import open_store, schema_version, table_counts

    s = existing_store()
    with open_store(s) as con:  # migrates an existing store (never creates one)
        counts = table_counts(con)
        version = schema_version(con)
    table = Table("table", "rows", title=f"{s.database} (schema v{version})")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    print_table(table)
    console.print(f"workspace: {s.workspace}\nMLflow:    {mask_uri(s.mlflow_uri)}\nreports:   {s.reports}")
