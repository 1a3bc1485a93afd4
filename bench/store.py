"""The benches' named SQL (``bench/sql/<name>.sql``), run like the library's (``router.storage``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from router.storage import bind

SQL_DIR = Path(__file__).resolve().parent / "sql"


def query(name: str) -> str:
    """Text of ``bench/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()


def execute(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> list[tuple]:
    sql = query(name)
    return con.execute(sql, bind(sql, params)).fetchall()


def relation(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None):
    sql = query(name)
    return con.sql(sql, params=bind(sql, params) or None)


def scalar(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> Any:
    rows = execute(con, name, params)
    return rows[0][0] if rows else None
