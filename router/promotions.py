"""The store's record of the champion's changes: one ``promotions`` row each time the alias moves, and each gate.

MLflow's ``champion`` alias is what routes; this table is what analysts read (view ``champion_history``) and
what the drift check follows back through onboardings. Every path that moves the alias writes its row here, with
a ``kind`` (migration 018):

* ``gate`` — a champion/challenger gate (nightly training or onboarding), promoted or not, with the AIQs it
  compared (:func:`record_gate`);
* ``manual`` / ``rollback`` — ``routerctl models promote`` / ``rollback`` (:func:`record_move`);
* ``external`` — a move nothing here recorded (the alias moved in the MLflow UI or by another client, or a
  command died between moving it and writing its row): :func:`reconcile`, which every routing run calls with the
  champion it routes with, records it before any decision of that champion is written.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import duckdb

from router.storage import execute

log = logging.getLogger(__name__)

__all__ = ["KINDS", "reconcile", "record_gate", "record_move", "recorded_champion"]

KINDS = ("gate", "manual", "rollback", "external")


def _version(value: int | str | None) -> str | None:
    return None if value is None else str(value)


def _insert(con: duckdb.DuckDBPyConnection, registered_model: str, kind: str, challenger: int | str,
            before: int | str | None, after: int | str | None, promoted: bool, reason: str,
            flow_run_id: str | None, aiqs: dict[str, float | None] | None = None) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown promotion kind {kind!r}; one of {', '.join(KINDS)}")
    aiqs = aiqs or {}
    execute(con, "routing/insert_promotion", {
        "now": datetime.now(UTC).replace(tzinfo=None), "registered_model": registered_model, "kind": kind,
        "challenger": str(challenger), "champion_before": _version(before), "champion_after": _version(after),
        "challenger_aiq": aiqs.get("challenger_aiq"), "champion_aiq": aiqs.get("champion_aiq"),
        "baseline_aiq": aiqs.get("baseline_aiq"), "baseline_se": aiqs.get("baseline_se"),
        "promoted": promoted, "reason": reason, "flow_run_id": flow_run_id,
    })


def record_gate(con: duckdb.DuckDBPyConnection, registered_model: str, version: int, champion_before: int | None,
                champion_after: int | None, decision: Any, baseline_aiq: float | None,
                flow_run_id: str | None) -> None:
    """A gate's row: the challenger ``version``, the champion before and after, and the decision
    (``router.registry.gate.GateDecision``)."""
    _insert(con, registered_model, "gate", version, champion_before, champion_after, decision.promoted,
            decision.reason, flow_run_id, {"challenger_aiq": decision.challenger_aiq,
                                           "champion_aiq": decision.champion_aiq, "baseline_aiq": baseline_aiq,
                                           "baseline_se": decision.baseline_se})


def record_move(con: duckdb.DuckDBPyConnection, registered_model: str, kind: str, before: int | None, after: int,
                reason: str, flow_run_id: str | None = None) -> None:
    """A move of the alias from ``before`` to ``after`` that no gate decided (``manual``, ``rollback``,
    ``external``)."""
    _insert(con, registered_model, kind, after, before, after, True, reason, flow_run_id)


def recorded_champion(con: duckdb.DuckDBPyConnection, registered_model: str) -> int | None:
    """The champion after the newest recorded row (``None``: nothing recorded, or no champion)."""
    rows = execute(con, "routing/recorded_champion", {"registered_model": registered_model})
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def reconcile(con: duckdb.DuckDBPyConnection, registered_model: str, champion: int,
              flow_run_id: str | None = None) -> str | None:
    """Record an ``external`` move when the registry's ``champion`` is not the newest one recorded (or none is
    recorded: a store that starts routing with a registry's champion it never gated); returns the row's reason,
    ``None`` when the record already agreed."""
    before = recorded_champion(con, registered_model)
    if before == champion:
        return None
    was = "no champion recorded" if before is None else f"v{before}"
    reason = (f"the champion alias moved outside the pipeline: {was} → v{champion} in the registry, no row of this "
              "store recorded the move (made in MLflow itself, or by a command that stopped before recording it)")
    record_move(con, registered_model, "external", before, champion, reason, flow_run_id)
    log.warning("%s: %s", registered_model, reason)
    return reason
