"""The DuckDB warehouse: opening it safely from many processes, sessions and transactions. What the raw layer
holds and how it is laid out is `flywheel/ingest/raw_layer.py`'s."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from flywheel.settings import Home

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
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_s
    delay, told = 0.05, False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only,
                                  config={**CONFIG, "memory_limit": options.memory_limit})
        except duckdb.IOException as error:
            if not _is_lock_conflict(error):
                raise
            if time.monotonic() > deadline:
                raise WarehouseBusyError(
                    f"{path} stayed locked by another process for {lock_timeout_s:.0f}s: {error}"
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
