"""The DuckDB warehouse: opening it safely from many processes, sessions and transactions. What the raw layer
holds and how it is laid out is `flywheel/ingest/raw_layer.py`'s."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from flywheel.settings import Home, owner_only, private_folder

CONFIG = {
    # A new warehouse is written in DuckDB's newest storage format: its string compression (FSST dictionaries)
    # halves the size of the logged texts against the default, which stays readable by DuckDB 0.10. Readers
    # need DuckDB 1.5 or newer; a warehouse made before keeps its format.
    "storage_compatibility_version": "latest",
}


class WarehouseBusyError(RuntimeError):
    pass


def _is_lock_conflict(error: duckdb.Error) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


def connect(
    home: Home,
    *,
    read_only: bool = False,
    lock_timeout_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the home's warehouse, waiting (with jittered back-off) while another process holds its lock, up to
    the home's lock timeout unless `lock_timeout_s` says otherwise (a sensor's tick must not wait long)."""
    path, options = home.warehouse, home.warehouse_options
    lock_timeout_s = options.lock_timeout_s if lock_timeout_s is None else lock_timeout_s
    if read_only and not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: ingest something first (flywheel ingest/run)")
    private_folder(path.parent)
    deadline = time.monotonic() + lock_timeout_s
    delay, told = 0.05, False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only,
                                 config={**CONFIG, "memory_limit": options.memory_limit})
            if not read_only:
                for made in (path, path.with_name(path.name + ".wal")):
                    owner_only(made)
            return con
        except duckdb.IOException as error:
            if not _is_lock_conflict(error):
                raise
            if time.monotonic() > deadline:
                holder = re.search(r"\(PID (\d+)\)", str(error))
                raise WarehouseBusyError(
                    f"{path} stayed locked by another process{f' (PID {holder[1]})' if holder else ''} for "
                    f"{lock_timeout_s:.0f}s (FLYWHEEL_LOCK_TIMEOUT): try again once it is done"
                ) from error
            if on_wait and not told:
                on_wait(f"{path.name} is in use by another process; waiting for it (up to {lock_timeout_s:.0f}s)")
                told = True
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 2.0)


@contextmanager
def session(home: Home, **kwargs) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(home, **kwargs)
    try:
        yield con
    finally:
        con.close()


class RefusedStatement(ValueError):
    """A statement the read-only query tool does not run."""


_READING = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


@contextmanager
def query_session(home: Home, *, allow_files: bool = False,
                  on_wait: Callable[[str], None] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse opened for an analyst's queries: read-only, its configuration locked, and (unless
    `allow_files`) no file outside FLYWHEEL_HOME readable. Run statements through `run_query`."""
    con = connect(home, read_only=True, on_wait=on_wait)
    try:
        if not allow_files:
            con.execute(f"SET allowed_directories = [{sql_literal(str(home.root) + os.sep)}]")
            con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


def run_query(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.DuckDBPyRelation:
    """Run one statement that only reads (SELECT, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN, FROM ...); any other is
    refused before it runs."""
    statements = con.extract_statements(query)
    if len(statements) != 1:
        raise RefusedStatement(f"one statement at a time, not {len(statements)}")
    kind = statements[0].type
    if kind not in _READING:
        raise RefusedStatement(f"only queries that read are run here, not {kind.name} statements "
                               "(SELECT, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN)")
    return con.sql(query)


def sql_literal(text: str) -> str:
    """A string as a DuckDB SQL literal, for statements that must not bind parameters (see the loader)."""
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All of the writes inside, or none of them."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def database_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file of a connection's database; None in memory."""
    path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return Path(path[0][0]).resolve() if path and path[0][0] else None
