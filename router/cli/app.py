"""The Typer application shared by every command module."""

from __future__ import annotations

import logging
import os
from typing import NoReturn

import typer
from rich.console import Console

class _App(typer.Typer):
    """Prints an expected failure (:class:`router.errors.RouterError`) as one clear line and exits 2."""

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        from router.errors import RouterError

        try:
            return super().__call__(*args, **kwargs)
        except RouterError as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            from rich.markup import escape

            err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise SystemExit(2) from None


app = _App(
    name="routerctl",
    help="Cost-aware LLM routing pipeline: ingest, validate, embed, train, evaluate, register, route.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=False)
err_console = Console(stderr=True)


def settings():
    """Settings from the environment (and ``ROUTER_CONFIG``), workspace created."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from router.settings import Settings

    s = Settings()
    s.ensure_workspace()
    return s


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "urllib3", "sentence_transformers", "great_expectations", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = 1) -> NoReturn:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)
