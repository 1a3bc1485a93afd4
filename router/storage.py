"""The DuckDB store: connections, numbered migrations, and named SQL from ``sql/``.

Every SQL statement lives in a ``.sql`` file: migrations in ``sql/migrations/NNN_name.sql`` (applied once,
in order, each in its own transaction, recorded in ``schema_migrations``), analyst views created by those
migrations, and the queries the library runs in ``sql/queries/<name>.sql``. User values are always bound
as parameters (``$name``); no identifier is ever interpolated.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from router import resources
from router.errors import BUSY, RouterError
from router.settings import Settings

if TYPE_CHECKING:
    import polars as pl

SQL_DIR = resources.sql_dir()
_MIGRATION = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


class StoreError(RouterError, RuntimeError):
    """The DuckDB store could not be opened or is in an unexpected state."""


#: Seconds :func:`connect` keeps retrying while another process holds the store (0: fail at once). The nightly
#: steps use :data:`NIGHTLY_WAIT_SECONDS` unless ``ROUTER_STORE_WAIT_SECONDS`` is set.
WAIT_ENV = "ROUTER_STORE_WAIT_SECONDS"
NIGHTLY_WAIT_SECONDS = 60.0


def wait_seconds(default: float = 0.0) -> float:
    """``ROUTER_STORE_WAIT_SECONDS`` if set, else ``default``."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise StoreError(f"{WAIT_ENV}={raw!r} is not a number of seconds") from None


#: How DuckDB words a file another process holds ("Could not set lock on file ...: Conflicting lock is held in
#: ..."); matched as phrases, since the message also holds the store's path, which may contain "lock" itself.
_LOCK_PHRASES = ("could not set lock", "conflicting lock")


def _locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(phrase in text for phrase in _LOCK_PHRASES)


def _open_error(path: Path, exc: BaseException, waited: float) -> StoreError:
    text = str(exc)
    if _locked(exc):
        after = f" (retried for {waited:.0f} s)" if waited else ""
        return StoreError(
            f"cannot open {path}: another process holds it{after}: {text}. A nightly run? Wait for it to finish "
            f"(or set {WAIT_ENV}); analysts can query the Parquet snapshots instead", code=BUSY
        )
    low = text.lower()
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or any(
            w in low for w in ("permission denied", "read-only file system", "operation not permitted")):
        return StoreError(f"cannot open {path} for writing: the workspace is read-only or not writable ({text}); "
                          "nothing was changed")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "no space left" in low:
        return StoreError(f"cannot write {path}: the disk is full ({text}); nothing was changed")
    return StoreError(f"cannot open {path}: {text}")


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


def newer_schema(version: int, latest: int) -> str:
    """Why a store at schema ``version``, above ``latest`` (this code's newest migration), is not this code's to use."""
    return (f"the store was written by a newer release of xattn-router (schema {version}, this code knows up to "
            f"{latest}): use that release (or a later one)")


def migrate(con: duckdb.DuckDBPyConnection, sql_dir: Path = SQL_DIR) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now.

    Raises :class:`StoreError` (exit 2), changing nothing, on a store that records a migration above the latest one
    in ``sql_dir``: a newer release wrote it (and this one was installed since), and rows this code writes may not be
    what the newer schema expects.
    """
    con.execute((sql_dir / "schema_migrations.sql").read_text())
    done = {row[0] for row in con.execute(query("schema_versions", sql_dir)).fetchall()}
    known = migrations(sql_dir)
    latest = max((v for v, _, _ in known), default=0)
    if done and max(done) > latest:
        raise StoreError(f"{newer_schema(max(done), latest)}; this release does not write to it (it could write rows "
                         "the newer schema does not expect), so nothing was changed. `routerctl doctor` still reads it")
    applied = []
    for version, name, path in known:
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


def connect(settings: Settings, *, read_only: bool = False, migrate_schema: bool = True,
            wait: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the store (creating and migrating it unless ``read_only``).

    While another process holds the file (DuckDB allows one writing process), retry for ``wait`` seconds
    (default: ``ROUTER_STORE_WAIT_SECONDS``, else 0), then raise :class:`StoreError` naming the file. A
    read-only or full workspace also raises :class:`StoreError`, with nothing written.
    """
    path = settings.database
    if read_only and not path.exists():
        raise StoreError(f"no store at {path}: run `routerctl ingest` first")
    wait = wait_seconds() if wait is None else max(0.0, wait)
    start = time.monotonic()
    delay = 0.2
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except (duckdb.IOException, duckdb.PermissionException, OSError) as exc:
            waited = time.monotonic() - start
            if _locked(exc) and waited < wait:
                time.sleep(min(delay, wait - waited))
                delay = min(delay * 2, 5.0)
                continue
            raise _open_error(path, exc, waited) from exc
    con.execute(query("session_settings"))
    if migrate_schema and not read_only:
        try:
            migrate(con, settings.sql_dir)
        except BaseException:
            con.close()
            raise
    return con


@contextmanager
def open_store(settings: Settings, *, read_only: bool = False,
               wait: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(settings, read_only=read_only, wait=wait)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction: committed on success, rolled back on any error (a full disk included)."""
    from router import faults

    con.begin()
    try:
        yield con
        faults.point("commit")  # inert unless ROUTER_FAULT_POINT names it (tests)
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


def register(con: duckdb.DuckDBPyConnection, name: str, frame: Any) -> None:
    """Expose a polars frame to SQL as ``name``. Strings go over as Arrow string views, without a copy (the
    default conversion copies every string: 0.2 s per 1M short prompts, paid at each registration)."""
    import polars as pl

    if isinstance(frame, pl.DataFrame):
        frame = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    con.register(name, frame)


def relation(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None):
    """The named query as a relation (``.pl()``, ``.to_arrow_table()``, ...)."""
    sql = query(name)
    return con.sql(sql, params=bind(sql, params) or None)


def per_row(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, query_name: str, key: str
            ) -> pl.DataFrame:
    """Register ``frame`` as ``name`` and return the named query's result (one row per frame row, carrying its
    ``key``) in the frame's row order. A plain scan of a registered frame keeps its order, which is checked on
    ``key`` (a cheap comparison); should a plan ever reorder the rows, they are realigned by a join on ``key``."""
    register(con, name, frame)
    out = relation(con, query_name).pl()
    if not out[key].equals(frame[key]):
        out = frame.select(key).join(out, on=key, how="left", maintain_order="left")
    return out


def scalar(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> Any:
    rows = execute(con, name, params)
    return rows[0][0] if rows else None


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in con.execute(query("table_counts")).fetchall()}
