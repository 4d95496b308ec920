"""The DuckDB warehouse: opening it safely from many processes, and the raw layer's tables."""

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
            return duckdb.connect(str(path), read_only=read_only, config={"memory_limit": DEFAULT_MEMORY_LIMIT})
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
CREATE TABLE IF NOT EXISTS raw.interactions (
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
CREATE TABLE IF NOT EXISTS raw.feedback (
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


def ensure_raw_layer(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(RAW_DDL)
