"""The Typer application shared by every command module, and the exit-code contract it enforces.

Every command runs inside :meth:`_Group.invoke`: an expected failure (:class:`router.errors.RouterError`, or a
class mapped in :data:`router.errors.CODES_BY_CLASS`) is printed as one line and exits with its code; anything
else is an internal error: exit 5, its traceback written to ``$ROUTER_HOME/logs/`` (the line names the file),
never to the terminal. ``--verbose`` re-raises instead, traceback and all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from router.errors import BAD_INPUT, RouterError, contract_text, exit_code, is_expected

if TYPE_CHECKING:
    from rich.table import Table

log = logging.getLogger("router.cli")


def _traceback_file(exc: BaseException) -> str:
    """Write ``exc``'s traceback under the workspace's ``logs/`` (the system temp folder when there is no
    workspace yet) and return the file's path."""
    import tempfile
    import time
    import traceback
    from pathlib import Path

    try:
        from router.settings import Settings

        workspace = Settings().workspace
        folder = workspace / "logs" if workspace.is_dir() else Path(tempfile.gettempdir())
    except Exception:  # noqa: BLE001 - the settings themselves may be what failed
        folder = Path(tempfile.gettempdir())
    name = f"routerctl-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(exc))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    except OSError:  # the workspace cannot be written (perhaps the very failure): the system temp folder
        folder = Path(tempfile.gettempdir())
        (folder / name).write_text(text)
    return str(folder / name)


def _release(exc: BaseException) -> None:
    """Drop the frames an exception chain holds (open DuckDB connections, relations, ...), so nothing from a
    failed command is still alive at interpreter exit (DuckDB's bindings print 'leaked instance' lines then)."""
    import gc
    import traceback

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    gc.collect()


class _Group(TyperGroup):
    """Maps every exception a command raises to the exit-code contract (:mod:`router.errors`)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the contract's one place
            if ctx.find_root().params.get("verbose"):
                raise
            from typer._click.exceptions import ClickException

            if isinstance(exc, ClickException):  # usage errors: click prints them and exits 2
                raise
            from rich.markup import escape

            code = exit_code(exc)
            if is_expected(exc):
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
            else:
                path = _traceback_file(exc)
                err_console.print(f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}"
                                  f"\n(a bug: the traceback is in {escape(path)}; rerun with --verbose to see it "
                                  "here)")
            _release(exc)
            del exc
            raise typer.Exit(code) from None


app = typer.Typer(
    name="routerctl",
    cls=_Group,
    help="Cost-aware LLM routing pipeline: ingest, validate, embed, train, evaluate, register, route.\n\n"
         "Exit codes:\n\n" + contract_text().replace("\n", "\n\n"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)
err_console = Console(stderr=True)


def _is_tty(out: Console) -> bool:
    """Whether ``out`` writes to a terminal, asked of its file itself: ``FORCE_COLOR`` or ``TTY_COMPATIBLE``, which
    make rich colour a pipe, do not make a job log fit a window it does not have."""
    isatty = getattr(out.file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed file
        return False


def print_table(table: Table, out: Console | None = None) -> None:
    """Print ``table`` (on ``out``, default :data:`console`) with every value whole.

    On a terminal, rich fits the table to the window: cells wrap, and a word wider than its column folds onto the
    next line rather than end in "…". Anywhere else (piped, redirected, a job log) there is no window to fit, and
    rich's width (``COLUMNS``, else 80) would squeeze columns until values are cut or vanish: the table is printed
    at its natural width instead, every row on one line with every value whole (title and caption included), for
    ``grep`` and parsers. Sets the table's ``width`` (piped) or its columns' ``overflow`` (terminal).
    """
    out = out or console
    if _is_tty(out):
        from rich.segment import Segment

        for column in table.columns:
            column.overflow = "fold"
        # rich applies the columns' min_width after fitting the table to the window, which can leave it a few
        # cells wider (its right edge then cut off): fit it to a window that much narrower
        width = out.width
        for _ in range(8):
            lines = Segment.split_lines(out.render(table, out.options.update_width(width)))
            excess = max((Segment.get_line_length(line) for line in lines), default=0) - out.width
            if excess <= 0 or width - excess < 1:
                break
            width -= excess
        out.print(table, width=width)
        return
    from rich.measure import Measurement

    natural = Measurement.get(out, out.options.update_width(1 << 20), table).maximum
    annotations = [out.render_str(a) if isinstance(a, str) else a for a in (table.title, table.caption) if a]
    width = max([natural, *(line.cell_len for a in annotations for line in a.split())])
    table.width = table.min_width = width
    out.print(table, crop=False)


def settings(create: bool = True):
    """Settings from the environment (and ``ROUTER_CONFIG``); the workspace is created unless ``create=False``
    (read commands, which then check for the store with :func:`existing_store`)."""
    from router.settings import Settings, process_env_defaults

    process_env_defaults()

    s = Settings()
    if create:
        s.ensure_workspace()
    return s


def existing_store():
    """The settings of a workspace whose store exists; exit 2 saying so otherwise (nothing is created)."""
    s = settings(create=False)
    if not s.database.exists():
        raise RouterError(f"no store at {s.database} (ROUTER_HOME={s.workspace}): nothing has been ingested "
                          "there. Check ROUTER_HOME, or start with `routerctl ingest KIND FILES` or "
                          "`routerctl nightly --demo`")
    return s


@contextmanager
def writing(s: Any) -> Iterator[None]:
    """The workspace lock for a command that writes (``router.locking.writer_lock``), saying who holds it while it
    waits; the analysts' snapshots are exported when the command ends (``router.snapshots.refreshed``)."""
    from router.locking import writer_lock
    from router.snapshots import refreshed

    with writer_lock(s.workspace, say=err_console.print), refreshed(s):
        yield


def positive(value: float | None) -> float | None:
    """Typer callback: a reward parameter or budget must be a positive finite number (exit 2 otherwise)."""
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a positive finite number, got {value}")
    return value


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging; tracebacks on errors")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "urllib3", "sentence_transformers", "great_expectations", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    """Stop the command: one error line, exit ``code`` (see :data:`router.errors.EXIT_CODES`)."""
    raise RouterError(message, code=code)


__all__ = ["app", "console", "err_console", "existing_store", "fail", "positive", "print_table", "settings",
           "writing"]
