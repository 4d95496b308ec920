"""The DuckDB warehouse: opening it safely from many processes, and the raw layer.

The raw layer's events are read through two views, `raw.interactions` and `raw.feedback`. Each is the union
of rows stored in the DuckDB file (`raw.interactions_rows`: what small files bring) and of immutable Parquet
segments in a folder beside it, `warehouse.raw/` for `warehouse.duckdb` (what large files bring: the processes
that validate them write them in parallel, so a bulk load is not held to DuckDB's one writing process). A
segment exists for queries once registered in `raw.segments`, in the same transaction as the ledger's
progress and the views' new definitions. Nothing updates or deletes raw events: a registered segment never
changes.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

# DuckDB lets one process at a time open a file for writing. Dagster runs steps (and runs) in separate
# processes, so a writer that finds the file locked waits its turn instead of failing.
DEFAULT_LOCK_TIMEOUT_S = float(os.environ.get("FLYWHEEL_LOCK_TIMEOUT", "600"))
# DuckDB would otherwise cache up to 80% of the machine's memory; it spills to disk beyond this limit.
DEFAULT_MEMORY_LIMIT = os.environ.get("FLYWHEEL_DUCKDB_MEMORY", "2GB")


CONFIG = {
    "memory_limit": DEFAULT_MEMORY_LIMIT,
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
    path: Path,
    *,
    read_only: bool = False,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    on_wait: Callable[[str], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, waiting (with jittered back-off) while another process holds its lock."""
    if read_only and not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: ingest something first (flywheel ingest/run)")
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_s
    delay, told = 0.05, False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=CONFIG)
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
def session(path: Path, **kwargs) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, **kwargs)
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


RAW_DDL = """
CREATE SCHEMA IF NOT EXISTS raw;

-- One row per interaction event, as logged, with its nested parts as DuckDB types (columnar, compressed
-- like any other column). A message's `content` is its text; content given as a list of parts (images,
-- audio) is kept as the JSON text of that list. event_date (UTC) is the daily partition every later
-- layer works in.
CREATE TABLE IF NOT EXISTS raw.interactions_rows (
    request_id      VARCHAR NOT NULL,
    event_date      DATE NOT NULL,
    ts              TIMESTAMPTZ NOT NULL,
    app_id          VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    provider        VARCHAR,
    messages        STRUCT(role VARCHAR, content VARCHAR, "name" VARCHAR, tool_call_id VARCHAR, tool_calls JSON)[]
                    NOT NULL,
    response        STRUCT(role VARCHAR, content VARCHAR, tool_calls JSON, refusal VARCHAR, finish_reason VARCHAR),
    tools           JSON,
    params          JSON,
    latency_ms      DOUBLE,
    tokens_in       BIGINT,
    tokens_out      BIGINT,
    cost_usd        DOUBLE,
    status          VARCHAR NOT NULL,
    error           VARCHAR,
    user_hash       VARCHAR,
    session_hash    VARCHAR,
    tags            VARCHAR[],
    metadata        JSON,
    source_file     VARCHAR NOT NULL,
    source_line     BIGINT NOT NULL,
    file_hash       VARCHAR NOT NULL,
    ingested_at     TIMESTAMPTZ NOT NULL
);

-- Feedback may arrive before or after its interaction; the two are joined downstream, never here.
CREATE TABLE IF NOT EXISTS raw.feedback_rows (
    feedback_id     VARCHAR NOT NULL,
    request_id      VARCHAR NOT NULL,
    event_date      DATE NOT NULL,
    ts              TIMESTAMPTZ NOT NULL,
    feedback_type   VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    thumb           VARCHAR,
    rating          DOUBLE,
    rating_scale    DOUBLE,
    correction      VARCHAR,
    success         BOOLEAN,
    comment         VARCHAR,
    user_hash       VARCHAR,
    metadata        JSON,
    source_file     VARCHAR NOT NULL,
    source_line     BIGINT NOT NULL,
    file_hash       VARCHAR NOT NULL,
    ingested_at     TIMESTAMPTZ NOT NULL
);

-- The Parquet segments of the raw layer: a segment holds the events of one kind from one block of lines
-- of one input file, with exactly the columns of the matching *_rows table.
CREATE TABLE IF NOT EXISTS raw.segments (
    table_name      VARCHAR NOT NULL,       -- interactions | feedback
    path            VARCHAR NOT NULL,       -- relative to the warehouse's folder
    file_hash       VARCHAR NOT NULL,
    first_line      BIGINT NOT NULL,
    last_line       BIGINT NOT NULL,
    row_count       BIGINT NOT NULL,
    registered_at   TIMESTAMPTZ NOT NULL
);

-- Every line that could not be ingested, with why; nothing is dropped.
CREATE TABLE IF NOT EXISTS raw.quarantine (
    source_file     VARCHAR NOT NULL,
    file_hash       VARCHAR NOT NULL,
    line_no         BIGINT NOT NULL,
    reason          VARCHAR NOT NULL,
    raw_text        VARCHAR,
    raw_bytes       BLOB,
    quarantined_at  TIMESTAMPTZ NOT NULL
);

-- One row per distinct file content: what makes ingestion exactly-once and resumable.
CREATE TABLE IF NOT EXISTS raw.ingest_ledger (
    file_hash       VARCHAR PRIMARY KEY,
    first_path      VARCHAR NOT NULL,
    size_bytes      BIGINT NOT NULL,
    format          VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,       -- in_progress | done
    lines_done      BIGINT NOT NULL,        -- lines committed so far; a resumed run skips them
    lines_ingested  BIGINT NOT NULL,
    lines_quarantined BIGINT NOT NULL,
    lines_duplicate BIGINT NOT NULL,
    lines_blank     BIGINT NOT NULL,
    events_ingested BIGINT NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ
);

-- Every path ever offered for ingestion, including renamed copies of known content.
CREATE TABLE IF NOT EXISTS raw.ingest_files (
    path            VARCHAR NOT NULL,
    file_hash       VARCHAR NOT NULL,
    outcome         VARCHAR NOT NULL,       -- ingested | resumed | already_ingested | copy_of_ingested
    seen_at         TIMESTAMPTZ NOT NULL
);
"""


EVENT_TABLES = ("interactions", "feedback")


def database_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file of a connection's database; None in memory."""
    path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return Path(path[0][0]).resolve() if path and path[0][0] else None


def segments_folder(con: duckdb.DuckDBPyConnection) -> Path | None:
    """Where the raw layer's Parquet segments live: `<name>.raw/` beside the DuckDB file `<name>.duckdb`, its
    own whatever else shares the folder (none for a database in memory)."""
    database = database_path(con)
    return database.with_suffix(".raw") if database else None


def ensure_raw_layer(con: duckdb.DuckDBPyConnection) -> None:
    for table in EVENT_TABLES:  # warehouses made before segments kept events in tables of the views' names
        if con.execute(f"""SELECT 1 FROM duckdb_tables() WHERE database_name = current_database()
                           AND schema_name = 'raw' AND table_name = '{table}'""").fetchall():
            con.execute(f"ALTER TABLE raw.{table} RENAME TO {table}_rows")
    con.execute(RAW_DDL)
    for table in EVENT_TABLES:
        refresh_view(con, table)


def refresh_view(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """(Re)define `raw.<table>` as its stored rows and its registered segments; run it inside the transaction
    that registers segments."""
    folder = segments_folder(con)
    paths = [row[0] for row in con.execute(
        f"SELECT path FROM raw.segments WHERE table_name = '{table}' ORDER BY file_hash, first_line").fetchall()]
    # Absolute paths: any DuckDB client opening the file reads the views (a moved warehouse is re-pointed by
    # the next writer's `ensure_raw_layer`).
    segments = (
        " UNION ALL SELECT * FROM read_parquet([" + ", ".join(sql_literal(str(folder / p)) for p in paths) + "])"
        if paths and folder else ""
    )
    con.execute(f"CREATE OR REPLACE VIEW raw.{table} AS SELECT * FROM raw.{table}_rows{segments}")


def remove_unregistered_segments(con: duckdb.DuckDBPyConnection) -> int:
    """Delete segment files that no view reads: left by a run that stopped between moving a segment into place
    and committing it. Only a writer (the holder of the file's lock) may call this; return how many."""
    folder = segments_folder(con)
    if folder is None or not folder.exists():
        return 0
    registered = {row[0] for row in con.execute("SELECT path FROM raw.segments").fetchall()}
    removed = 0
    for table in EVENT_TABLES:
        for file in (folder / table).glob("*.parquet"):
            if f"{table}/{file.name}" not in registered:
                file.unlink(missing_ok=True)
                removed += 1
    return removed
