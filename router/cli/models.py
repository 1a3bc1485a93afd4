"""``routerctl models``: the registered router's versions, for platform teams.

``list`` shows every version with its aliases; ``promote VERSION`` points ``champion`` at a version after checking
its model pool against the store's; ``rollback`` moves ``champion`` back to the previous champion. These three only
read or move MLflow aliases (see ``router.registry.promotion``); nothing is retrained or copied. A move is recorded
in the store's ``promotions`` (``router.promotions``), where analysts read the champion's history. ``onboard MODEL``
learns a new model's embedding into the champion (``router.nightly.onboard_model``) and gates the result.
"""

from __future__ import annotations

import typer

from router.cli.app import app, console, err_console, existing_store, fail, print_table, settings, writing
from router.redact import mask_uri

models_app = typer.Typer(
    name="models",
    help="Registered router versions: list them, promote one to champion, roll the champion back, onboard a model.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


def _existing_registry():
    """The settings, once it is known that a local (sqlite) registry exists: listing never creates one."""
    from router.errors import RouterError

    s = settings(create=False)
    missing = s.missing_registry()
    if missing:
        raise RouterError(f"no MLflow registry at {mask_uri(missing)} (ROUTER_HOME={s.workspace}): nothing has "
                          "been trained there. Check ROUTER_HOME or ROUTER_MLFLOW_TRACKING_URI, or run "
                          "`routerctl nightly`")
    return s


def _record(s, kind: str, before: int | None, after: int, reason: str) -> None:
    """The move in the store's ``promotions`` (view ``champion_history``), when the workspace has a store; a move
    of the alias that no row recorded before it (``before`` differs from the store's last) is recorded first, as
    routing would find it (``router.promotions``)."""
    from router import promotions
    from router.storage import StoreError, open_store

    if not s.database.exists():
        return
    try:
        with open_store(s) as con:
            if before is not None:
                promotions.reconcile(con, s.registered_model, before)
            promotions.record_move(con, s.registered_model, kind, before, after, reason)
    except StoreError as exc:  # the alias moved: routing records the move when it next finds the store free
        err_console.print(f"[yellow]warning[/]: the move is not in the store's champion_history yet ({exc}); the "
                          "next routing run (routerctl route, the nightly) records it")


@models_app.command("list")
def list_versions() -> None:
    """List every version of the registered model, newest first, with its aliases, AIQ and gate decision."""
    from rich.table import Table

    from router.registry import promotion

    s = _existing_registry()
    versions = promotion.list_versions(s)
    history = promotion.champion_history(s)
    if not versions:
        console.print(f"no versions of [bold]{s.registered_model}[/] at {mask_uri(s.mlflow_uri)}")
        return
    table = Table(title=f"{s.registered_model} @ {mask_uri(s.mlflow_uri)}", title_justify="left")
    # No column is no_wrap: on a narrow terminal rich would squeeze the others to nothing (see print_table)
    table.add_column("version", justify="right")
    table.add_column("aliases")
    table.add_column("created (UTC)", min_width=10)  # the date stays whole where the time wraps
    table.add_column("test AIQ", justify="right")
    table.add_column("gate")
    table.add_column("models", justify="right")
    table.add_column("run")
    for v in versions:
        aliases = ", ".join(f"[bold green]{a}[/]" if a == promotion.CHAMPION else a for a in v.aliases)
        table.add_row(
            str(v.version),
            aliases or "-",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            "-" if v.aiq is None else f"{v.aiq:.4f}",
            v.gate or "-",
            "-" if v.n_models is None else str(v.n_models),
            v.run_id or "-",  # whole: MLflow looks a run up by its full id
        )
    print_table(table)
    if history:
        console.print(f"previous champions (oldest first): {', '.join(f'v{h}' for h in history)}")


@models_app.command("promote")
def promote(
    version: int = typer.Argument(..., min=1, help="model version to make champion"),
    reason: str = typer.Option("manual promotion", "--reason", help="recorded on the version (promotion_reason tag)"),
) -> None:
    """Point the champion alias at VERSION (its model pool must match the store's models)."""
    from router.registry import promotion
    from router.dataset import routable_pool
    from router.storage import open_store

    s = existing_store()
    with writing(s):
        with open_store(s, read_only=True) as con:
            store_models = routable_pool(con, s.onboard_min_outcomes)
        if not store_models:
            fail(f"the store at {s.database} holds no models; ingest data first")
        previous = promotion.promote(s, version, store_models, reason=reason)
        if previous != version:
            _record(s, "manual", previous, version, f"routerctl models promote: {reason}")
    if previous == version:
        console.print(f"v{version} is already {promotion.CHAMPION}; nothing moved")
    else:
        before = "none" if previous is None else f"v{previous}"
        console.print(f"{promotion.CHAMPION}: {before} → [bold green]v{version}[/]")


@models_app.command("rollback")
def rollback() -> None:
    """Move the champion alias back to the previous champion (from the champion_history tag)."""
    from router.registry import promotion

    s = _existing_registry()
    with writing(s):
        current, target = promotion.rollback(s)
        _record(s, "rollback", current, target, f"routerctl models rollback from v{current}")
    before = "none" if current is None else f"v{current}"
    console.print(f"{promotion.CHAMPION}: {before} → [bold green]v{target}[/] (rolled back)")


@models_app.command("onboard")
def onboard(
    model: str = typer.Argument(..., help="a model named by stored outcomes that the champion does not route to"),
) -> None:
    """Learn MODEL's embedding into the champion from its stored outcomes; register and gate the result.

    The rest of the network stays frozen; MODEL needs ROUTER_ONBOARD_MIN_OUTCOMES scored outcomes.
    """
    from router import nightly

    s = existing_store()
    with writing(s):
        step = nightly.onboard_model(s, model)
    decision = step.decision or {}
    console.print(f"onboarded {model}: v{step.version} registered as challenger, gate: "
                  f"[bold]{decision.get('decision')}[/] ({decision.get('reason')})")
