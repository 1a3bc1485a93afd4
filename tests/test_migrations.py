"""Upgrading a store: decisions stored before migration 007 get the policy keys routing writes; a store a newer
release wrote is refused by every writer."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from router.routing import policy_label
from router.storage import SQL_DIR, StoreError, migrate, migrations


def _up_to(sql_dir: Path, last: int, dest: Path) -> Path:
    """A copy of ``sql_dir`` without the migrations after ``last``."""
    shutil.copytree(sql_dir, dest)
    for path in (dest / "migrations").glob("*.sql"):
        if int(path.name[:3]) > last:
            path.unlink()
    return dest


def _store_at(tmp_path: Path, last: int) -> duckdb.DuckDBPyConnection:
    """A store migrated up to migration ``last``."""
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    migrate(con, _up_to(SQL_DIR, last, tmp_path / f"sql_{last}"))
    return con


def _keys(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    rows = con.execute("SELECT query_id, policy, reward_param, budget_usd FROM routing_decisions").fetchall()
    return {q: (policy, policy_label(param, budget)) for q, policy, param, budget in rows}


def test_decisions_from_before_007_are_keyed_as_routing_keys_them(tmp_path: Path) -> None:
    con = _store_at(tmp_path, 6)
    for query_id, param, budget in (("q1", 7500.0, None), ("q2", 1e9, None), ("q3", 0.0407123, None),
                                    ("q4", 1.0, 5.0)):
        con.execute("INSERT INTO routing_decisions VALUES (?, '1', 'r', 'm', 0.5, 0.001, 'linear', ?, 0.0, ?, NULL, "
                    "now()::TIMESTAMP)", [query_id, param, budget])
    migrate(con)
    keys = _keys(con)
    assert {q: stored for q, (stored, _) in keys.items()} == {
        "q1": "lambda=7500", "q2": "lambda=1e+09", "q3": "lambda=0.0407123", "q4": "budget=5"}
    assert all(stored == written for stored, written in keys.values())


def test_keys_the_first_007_wrote_are_rewritten(tmp_path: Path) -> None:
    """A store upgraded by the first 007 (DOUBLE-to-text keys); one query already decided again under the
    rewritten key keeps that newer decision only."""
    first_007 = tmp_path / "sql_first_007"
    shutil.copytree(SQL_DIR, first_007)
    path = first_007 / "migrations" / "007_decision_policies.sql"
    path.write_text(path.read_text().replace("printf('%g', budget_usd)", "budget_usd")
                    .replace("printf('%g', reward_param)", "reward_param"))
    con = _store_at(tmp_path, 6)
    for query_id, param, budget in (("q1", 7500.0, None), ("q2", 1e9, None), ("q3", 1.0, 5.0), ("q4", 0.5, None)):
        con.execute("INSERT INTO routing_decisions VALUES (?, '1', 'r', 'm', 0.5, 0.001, 'linear', ?, 0.0, ?, NULL, "
                    "TIMESTAMP '2026-01-01')", [query_id, param, budget])
    migrate(con, _up_to(first_007, 12, tmp_path / "sql_first_007_12"))
    assert {q: stored for q, (stored, _) in _keys(con).items()} == {
        "q1": "lambda=7500.0", "q2": "lambda=1000000000.0", "q3": "budget=5.0", "q4": "lambda=0.5"}
    con.execute("INSERT INTO routing_decisions VALUES ('q1', '1', 'r', 'other', 0.5, 0.001, 'linear', 7500.0, 0.0, "
                "NULL, NULL, TIMESTAMP '2026-02-01', 'lambda=7500')")  # decided again after the upgrade
    migrate(con)
    keys = _keys(con)
    assert all(stored == written for stored, written in keys.values()) and len(keys) == 4
    assert con.execute("SELECT chosen_model FROM routing_decisions WHERE query_id = 'q1'").fetchall() == [("other",)]
    assert con.execute("SELECT count(*) FROM routing_decisions").fetchone()[0] == 4


def test_promotions_from_before_018_are_gates(tmp_path: Path) -> None:
    """Every row written before the champion's other moves were recorded is a gate's; new rows name their kind."""
    con = _store_at(tmp_path, 17)
    con.execute("INSERT INTO promotions VALUES (TIMESTAMP '2026-01-01', 'm', '1', NULL, '1', 0.8, NULL, 0.7, true, "
                "'first', NULL, 0.01)")
    migrate(con)
    assert con.execute("SELECT kind, challenger, baseline_se FROM champion_history").fetchall() == [("gate", "1", 0.01)]
    from router import promotions

    promotions.record_move(con, "m", "manual", 1, 2, "by hand")
    assert promotions.recorded_champion(con, "m") == 2
    assert con.execute("SELECT kind FROM champion_history").fetchall() == [("manual",), ("gate",)]
    with pytest.raises(ValueError, match="unknown promotion kind 'ui'"):
        promotions.record_move(con, "m", "ui", 2, 1, "?")


def test_a_store_a_newer_release_wrote_is_refused_by_writers_and_left_unchanged(settings, store, cli) -> None:
    """A ``schema_migrations`` row above the latest migration (the store was written by a newer release, then this
    one installed): opening it to write fails with StoreError (exit 2), nothing changes; read-only opens still work."""
    from router.errors import BAD_INPUT, exit_code
    from router.storage import connect, schema_version

    latest = migrations()[-1][0]
    store.execute("INSERT INTO schema_migrations VALUES ($v, 'future', now())", {"v": latest + 1})
    store.close()
    before = settings.database.read_bytes()
    expected = (f"the store was written by a newer release of xattn-router (schema {latest + 1}, this code knows up "
                f"to {latest}): use that release (or a later one); this release does not write to it")
    with pytest.raises(StoreError) as caught:
        connect(settings)
    assert str(caught.value).startswith(expected) and exit_code(caught.value) == BAD_INPUT, str(caught.value)

    status = cli("status")  # a command that opens the store to write (and would migrate it)
    assert status.exit_code == BAD_INPUT and "newer release of xattn-router" in status.output, status.output
    assert settings.database.read_bytes() == before

    con = connect(settings, read_only=True)
    try:
        assert schema_version(con) == latest + 1
    finally:
        con.close()
