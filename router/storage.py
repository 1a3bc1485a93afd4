"""The DuckDB store: connections, numbered migrations, and named SQL from ``sql/``.

Every SQL statement lives in a ``.sql`` file: migrations in ``sql/migrations/NNN_name.sql`` (applied once,
in order, each in its own transaction, recorded in ``schema_migrations``), analyst views created by those
migrations, and the queries the library runs in ``sql/queries/<name>.sql``. User values are always bound
as parameters (``$name``); no identifier is ever interpolated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb

from router.settings import PROJECT_ROOT, Settings

SQL_DIR = PROJECT_ROOT / "sql"
_MIGRATION = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


class StoreError(RuntimeError):
    """The DuckDB store could not be opened or is in an unexpected state."""


@lru_cache(maxsize=None)
def query(name: str, sql_dir: Path = SQL_DIR) -> str:
    """Text of ``sql/queries/<name>.sql``."""
    path = sql_dir / "queries" / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no SQL query named {name!r} ({path})")
    return path.read_text()


def migrations(sql_dir: Path = SQL_DIR) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted((sql_dir / "migrations").glob("*.sql")):
        match = _MIGRATION.match(path.name)
        if not match:
            raise StoreError(f"migration file {path.name} is not named NNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"duplicate migration versions in {sql_dir / 'migrations'}")
    return found


def migrate(con: duckdb.DuckDBPyConnection, sql_dir: Path = SQL_DIR) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now."""
    con.execute((sql_dir / "schema_migrations.sql").read_text())
    done = {row[0] for row in con.execute(query("schema_versions", sql_dir)).fetchall()}
    applied = []
    for version, name, path in migrations(sql_dir):
        if version in done:
            continue
        con.begin()
        try:
            con.execute(path.read_text())
            con.execute(query("record_migration", sql_dir), {"version": version, "name": name})
            con.commit()
        except Exception as exc:
            con.rollback()
            raise StoreError(f"migration {path.name} failed: {exc}") from exc
        applied.append(version)
    return applied


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(query("schema_version")).fetchall()[0]
    return int(row[0]) if row and row[0] is not None else 0


def connect(settings: Settings, *, read_only: bool = False, migrate_schema: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the store (creating and migrating it unless ``read_only``)."""
    path = settings.database
    if read_only and not path.exists():
        raise StoreError(f"no store at {path}: run `routerctl ingest` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        raise StoreError(
            f"cannot open {path}: {exc}. Another process (a nightly run?) holds it; "
            "analysts can query the Parquet snapshots instead"
        ) from exc
    if migrate_schema and not read_only:
        migrate(con, settings.sql_dir)
    return con


@contextmanager
def open_store(settings: Settings, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(settings, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction: committed on success, rolled back on any error."""
    con.begin()
    try:
        yield con
    except BaseException:
        con.rollback()
        raise
    con.commit()


_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def bind(sql: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The subset of ``params`` that ``sql`` names (DuckDB refuses unused parameters)."""
    names = set(_PARAM.findall(sql))
    return {k: v for k, v in (params or {}).items() if k in names}


def execute(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> list[tuple]:
    """Run the named query with bound parameters and fetch all rows."""
    sql = query(name)
    return con.execute(sql, bind(sql, params)).fetchall()


def relation(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None):
    """The named query as a relation (``.pl()``, ``.to_arrow_table()``, ...)."""
    sql = query(name)
    return con.sql(sql, params=bind(sql, params) or None)


def scalar(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> Any:
    rows = execute(con, name, params)
    return rows[0][0] if rows else None


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in con.execute(query("table_counts")).fetchall()}
