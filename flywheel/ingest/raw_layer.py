"""The raw layer: every event once, as logged, and the ledger that makes ingestion exactly-once.

Its events are read through two views, `raw.interactions` and `raw.feedback`. Each is the union of rows stored
in the DuckDB file (`raw.interactions_rows`: what small files bring) and of immutable Parquet segments in a
folder beside it, `warehouse.raw/` for `warehouse.duckdb` (what large files bring: the processes that validate
them write them in parallel, so a bulk load is not held to DuckDB's one writing process). A segment exists for
queries once registered in `raw.segments`, in the same transaction as the ledger's progress and the views' new
definitions. Nothing updates or deletes raw events: a registered segment never changes.

This module owns the layer's kinds of events, its tables and views, its segments and the ledger's records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import msgspec.inspect as mi

from flywheel.contracts import CONTRACTS
from flywheel.settings import owner_only, private_folder
from flywheel.warehouse import create, sql_literal, storage_path, writing

if TYPE_CHECKING:
    from flywheel.ingest.validate import BlockResult


@dataclass(frozen=True)
class EventKind:
    name: str   # as the contract names it: interaction | feedback
    table: str  # raw.<table> (a view over raw.<table>_rows and the segments)
    key: str    # the column that makes an event unique


KINDS = {kind.name: kind for kind in (EventKind("interaction", "interactions", "request_id"),
                                      EventKind("feedback", "feedback", "feedback_id"))}
EVENT_TABLES = tuple(kind.table for kind in KINDS.values())
SEGMENT_FORMAT = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"


def segment_name(file_hash: str, first_line: int) -> str:
    """A segment's file name: its input's content and first line, so a block redone after a crash has the
    same name as any file it left unregistered."""
    return f"{file_hash[:24]}-{first_line:012d}.parquet"


# How the contract's fields are stored. Free-form parts, whose keys differ from event to event, are kept as
# JSON text; a message's `content` (text, or a list of parts such as images) is its text or the JSON text of
# the list. The schema version is the contract's, not the event's; an event's timestamp becomes `ts` and its
# UTC date `event_date`, the daily partition every later layer works in.
AS_JSON = frozenset({"tools", "params", "metadata", "tool_calls"})
NOT_STORED = frozenset({"schema_version"})


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    read: bool = True  # read as it is from a block file's events (else `expression` computes it)
    expression: str = ""  # a SELECT expression over a block file's fields; {source} and {digest} filled in


def _duckdb_type(info: mi.Type) -> str:
    if isinstance(info, mi.Metadata):
        return _duckdb_type(info.type)
    if isinstance(info, mi.UnionType):
        kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
        return _duckdb_type(kinds[0]) if len(kinds) == 1 else "VARCHAR"
    if isinstance(info, mi.StructType):
        return "STRUCT(" + ", ".join(f'"{f.encode_name}" {_field_type(f)}' for f in info.fields) + ")"
    if isinstance(info, mi.ListType):
        return _duckdb_type(info.item_type) + "[]"
    simple = {mi.StrType: "VARCHAR", mi.LiteralType: "VARCHAR", mi.IntType: "BIGINT", mi.FloatType: "DOUBLE",
              mi.BoolType: "BOOLEAN", mi.DictType: "JSON", mi.AnyType: "JSON"}
    if type(info) not in simple:
        raise TypeError(f"no DuckDB type for the contract's {info!r}")
    return simple[type(info)]


def _field_type(field: mi.Field) -> str:
    return "JSON" if field.encode_name in AS_JSON else _duckdb_type(field.type)


def _sql_default(value: object) -> str:
    if isinstance(value, str):
        return sql_literal(value)
    if value == []:
        return "[]"
    if value == {}:
        return "'{}'"
    raise TypeError(f"no SQL literal for the contract's default {value!r}")


def event_columns(kind: str) -> tuple[Column, ...]:
    """The columns of `raw.<table>_rows` (and of its segments), derived from the contract of `kind`: each
    field in the contract's order, then where the event came from. A field with a default gets it when an
    event leaves it out, and is never NULL. The raw layer inserts and unions by name, not by position."""
    columns = []
    for field in mi.type_info(CONTRACTS[kind]).fields:
        name = field.encode_name
        if name in NOT_STORED:
            continue
        if name == "timestamp":
            columns += [Column("event_date", "DATE", True, False, "make_timestamp(_fw_ts)::DATE"),
                        Column("ts", "TIMESTAMPTZ", True, False, "make_timestamptz(_fw_ts)")]
        elif name == KINDS[kind].key and not field.required:  # derived when absent: validation wrote it
            columns.append(Column(name, "VARCHAR", True, False, "_fw_key"))
        else:
            default = field.default_factory() if field.default_factory is not mi.NODEFAULT else field.default
            filled = default not in (None, mi.NODEFAULT)
            expression = f"coalesce({name}, {_sql_default(default)})" if filled else name
            columns.append(Column(name, _field_type(field), field.required or filled, True, expression))
    columns.sort(key=lambda column: column.name != KINDS[kind].key)  # the key first, as a reader looks for it
    return (*columns, Column("source_file", "VARCHAR", True, False, "{source}"),
            Column("source_line", "BIGINT", True, False, "_fw_line"),
            Column("file_hash", "VARCHAR", True, False, "{digest}"),
            Column("ingested_at", "TIMESTAMPTZ", True, False, "now()"))


def _event_table_ddl(kind: EventKind) -> str:
    columns = ",\n    ".join(f"\"{c.name}\" {c.type}{' NOT NULL' if c.not_null else ''}"
                              for c in event_columns(kind.name))
    return f"CREATE TABLE IF NOT EXISTS raw.{kind.table}_rows (\n    {columns}\n);\n"


RAW_DDL = "CREATE SCHEMA IF NOT EXISTS raw;\n" + "".join(_event_table_ddl(k) for k in KINDS.values()) + """
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
    quarantined_at  TIMESTAMPTZ NOT NULL,
    resolved_at     TIMESTAMPTZ,            -- a later reading of the same content (a fixed mapping) took it
    resolved_by     VARCHAR                 -- that reading's file_hash
);

-- One row per distinct file content: what makes ingestion exactly-once and resumable.
CREATE TABLE IF NOT EXISTS raw.ingest_ledger (
    file_hash       VARCHAR PRIMARY KEY,
    first_path      VARCHAR NOT NULL,
    size_bytes      BIGINT NOT NULL,
    format          VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,       -- in_progress | done | partial | failed
    lines_done      BIGINT NOT NULL,        -- lines committed so far; a resumed run skips them
    lines_ingested  BIGINT NOT NULL,
    lines_quarantined BIGINT NOT NULL,
    lines_duplicate BIGINT NOT NULL,
    lines_blank     BIGINT NOT NULL,
    events_ingested BIGINT NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    error           VARCHAR                 -- partial, failed, or the last attempt's failure: why
);

-- Every path ever offered for ingestion, including renamed copies of known content.
CREATE TABLE IF NOT EXISTS raw.ingest_files (
    path            VARCHAR NOT NULL,
    file_hash       VARCHAR NOT NULL,
    outcome         VARCHAR NOT NULL,       -- ingested | resumed | already_ingested | copy_of_ingested
                                            -- | partial | failed
    seen_at         TIMESTAMPTZ NOT NULL,
    reason          VARCHAR                 -- partial, failed: why
);
"""


def segments_folder(con: duckdb.DuckDBPyConnection) -> Path | None:
    """Where the raw layer's Parquet segments live: `<name>.raw/` beside the DuckDB file `<name>.duckdb`, its
    own whatever else shares the folder (none for a database in memory)."""
    database = storage_path(con)
    return database.with_suffix(".raw") if database else None


def raw_layer_exists(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether anything was ever ingested into this warehouse (its raw views exist)."""
    return bool(con.execute("SELECT 1 FROM duckdb_views() WHERE schema_name = 'raw' AND view_name = 'interactions'"
                            ).fetchall())


def ensure_raw_layer(con: duckdb.DuckDBPyConnection) -> None:
    with writing(con, "raw"):  # its views are remade: by one writer at a time
        _ensure_raw_layer(con)


def _ensure_raw_layer(con: duckdb.DuckDBPyConnection) -> None:
    for table in EVENT_TABLES:  # warehouses made before segments kept events in tables of the views' names
        if con.execute(f"""SELECT 1 FROM duckdb_tables() WHERE database_name = current_database()
                           AND schema_name = 'raw' AND table_name = '{table}'""").fetchall():
            con.execute(f"ALTER TABLE raw.{table} RENAME TO {table}_rows")
    create(con, RAW_DDL)
    _upgrade_event_tables(con)
    # Warehouses made before files could end partial or failed: the columns that say why.
    con.execute("ALTER TABLE raw.ingest_ledger ADD COLUMN IF NOT EXISTS error VARCHAR")
    con.execute("ALTER TABLE raw.ingest_files ADD COLUMN IF NOT EXISTS reason VARCHAR")
    con.execute("ALTER TABLE raw.quarantine ADD COLUMN IF NOT EXISTS resolved_at TIMESTAMPTZ")
    con.execute("ALTER TABLE raw.quarantine ADD COLUMN IF NOT EXISTS resolved_by VARCHAR")
    for table in EVENT_TABLES:
        refresh_view(con, table)


def _upgrade_event_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Bring the event tables of a warehouse made by an older flywheel to the contract's columns (a field the
    contract gained, a message part now kept); older segments keep theirs, as the views read by name."""
    def plain(kind: str) -> str:  # DuckDB spells types its own way: compare them as it prints them
        return kind.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE").replace('"', "").replace(" ", "").upper()

    for kind in KINDS.values():
        existing = dict(con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
            f"AND schema_name = 'raw' AND table_name = '{kind.table}_rows'").fetchall())
        for column in event_columns(kind.name):
            if column.name not in existing:
                con.execute(f'ALTER TABLE raw.{kind.table}_rows ADD COLUMN "{column.name}" {column.type}')
            elif plain(existing[column.name]) != plain(column.type):
                con.execute(f'ALTER TABLE raw.{kind.table}_rows ALTER COLUMN "{column.name}" TYPE {column.type}')


def refresh_view(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """(Re)define `raw.<table>` as its stored rows and its registered segments; run it inside the transaction
    that registers segments."""
    folder = segments_folder(con)
    paths = [row[0] for row in con.execute(
        f"SELECT path FROM raw.segments WHERE table_name = '{table}' ORDER BY file_hash, first_line").fetchall()]
    # Absolute paths: any DuckDB client opening the file reads the views (a moved warehouse is re-pointed by
    # the next writer's `ensure_raw_layer`).
    segments = (
        " UNION ALL BY NAME SELECT * FROM read_parquet(["
        + ", ".join(sql_literal(str(folder / p)) for p in paths) + "])"
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


def register_segment(con: duckdb.DuckDBPyConnection, result: BlockResult, kind: str, segment: str,
                      file_hash: str) -> None:
    """Move a block's segment into the raw layer's folder, keeping only its new events, and register it.

    Runs inside the commit's transaction. The file is in place before the commit: a crash in between leaves
    an unregistered file, which no view reads and the next run removes or replaces."""
    fresh = con.execute(f"""SELECT count(*) FROM block_fresh WHERE kind = '{kind}'
                            AND line_no BETWEEN {result.first_line:d} AND {result.last_line:d}""").fetchall()[0][0]
    if not fresh:
        return
    table = KINDS[kind].table
    folder = segments_folder(con) / table  # type: ignore[operator]  # segments are only made with a folder
    private_folder(folder.parent)
    private_folder(folder)
    target = folder / segment_name(file_hash, result.first_line)
    if fresh == result.rows[kind]:
        os.replace(segment, target)
    else:  # events already stored (an overlapping export, a key repeated in the file): rare, so rewritten here
        con.execute(f"""COPY (SELECT * FROM read_parquet({sql_literal(segment)}) WHERE source_line IN
                              (SELECT line_no FROM block_fresh WHERE kind = '{kind}'))
                        TO {sql_literal(str(target))} ({SEGMENT_FORMAT})""")
    owner_only(target)
    con.execute(f"""INSERT INTO raw.segments VALUES ('{table}', {sql_literal(f"{table}/{target.name}")},
                    {sql_literal(file_hash)}, {result.first_line:d}, {result.last_line:d}, {fresh:d}, now())""")


# The ledger. Values go into its statements as literals: DuckDB's Python binding imports pandas on the first
# bound parameter, about a second of the loading process's time (see the loader's commits).


# A file's content ends done, partial (its container broke off: what came before is stored) or failed (nothing
# could be read, or it failed the same way twice); none of them is read again.
FINAL = ("done", "partial", "failed")


@dataclass(frozen=True)
class LedgerEntry:
    status: str       # in_progress | done | partial | failed
    lines_done: int   # lines committed so far: a resumed run skips them
    first_path: str
    error: str | None = None


def ledger_entry(con: duckdb.DuckDBPyConnection, file_hash: str) -> LedgerEntry | None:
    """What the ledger knows of a file's content, if anything."""
    rows = con.execute(f"SELECT status, lines_done, first_path, error FROM raw.ingest_ledger "
                       f"WHERE file_hash = {sql_literal(file_hash)}").fetchall()
    return LedgerEntry(*rows[0]) if rows else None


def open_ledger(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, size: int, fmt: str) -> None:
    con.execute(f"""INSERT INTO raw.ingest_ledger (file_hash, first_path, size_bytes, format, status, lines_done,
                        lines_ingested, lines_quarantined, lines_duplicate, lines_blank, events_ingested, started_at)
                    VALUES ({sql_literal(file_hash)}, {sql_literal(str(path))}, {size:d}, {sql_literal(fmt)},
                            'in_progress', 0, 0, 0, 0, 0, 0, now())""")


def record_offer(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, outcome: str,
                 reason: str | None = None) -> None:
    """Every path offered is recorded, renamed copies of known content included."""
    con.execute(f"""INSERT INTO raw.ingest_files (path, file_hash, outcome, seen_at, reason)
                    VALUES ({sql_literal(str(path))}, {sql_literal(file_hash)}, {sql_literal(outcome)}, now(),
                            {sql_literal(reason) if reason else "NULL"})""")


def close_damaged(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, reason: str) -> str:
    """A file whose container broke off: what was read stays; it ends partial (some lines) or failed (none).
    Returns that status; the path's latest offer says the same."""
    status = "partial" if ledger_entry(con, file_hash).lines_done else "failed"  # type: ignore[union-attr]
    con.execute(f"""UPDATE raw.ingest_ledger SET status = '{status}', error = {sql_literal(reason)},
                    finished_at = now() WHERE file_hash = {sql_literal(file_hash)}""")
    _settle_offer(con, path, file_hash, status, reason)
    return status


def _settle_offer(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, outcome: str, reason: str) -> None:
    """Give this attempt's offer of the path (recorded as it started) its outcome; record one if none was."""
    where = f"path = {sql_literal(str(path))} AND file_hash = {sql_literal(file_hash)}"
    latest = con.execute(f"""SELECT max(seen_at) FROM raw.ingest_files WHERE {where}
                             AND outcome IN ('ingested', 'resumed') AND reason IS NULL""").fetchall()[0][0]
    if latest is None:
        record_offer(con, path, file_hash, outcome, reason)
        return
    con.execute(f"""UPDATE raw.ingest_files SET outcome = {sql_literal(outcome)}, reason = {sql_literal(reason)}
                    WHERE {where} AND seen_at = '{latest.isoformat()}'::TIMESTAMPTZ""")


def record_failure(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, size: int, fmt: str,
                   reason: str) -> str:
    """An attempt at a file that stopped on an error: kept in_progress to be resumed, unless the previous
    attempt stopped on the same error, in which case the file is failed. Returns the status."""
    entry = ledger_entry(con, file_hash)
    if entry is None:
        open_ledger(con, path, file_hash, size, fmt)
    status = "failed" if entry is not None and entry.error == reason else "in_progress"
    con.execute(f"""UPDATE raw.ingest_ledger SET status = '{status}', error = {sql_literal(reason)},
                    finished_at = {"now()" if status == "failed" else "NULL"}
                    WHERE file_hash = {sql_literal(file_hash)}""")
    _settle_offer(con, path, file_hash, "failed", reason)
    return status


def advance_ledger(con: duckdb.DuckDBPyConnection, file_hash: str, lines_done: int, ingested: int, duplicate: int,
                   quarantined: int, blank: int, events: int, finished: bool) -> None:
    """Count committed lines into the file's entry (inside the transaction that stored them)."""
    con.execute(f"""
        UPDATE raw.ingest_ledger SET
            lines_done = {lines_done:d}, lines_ingested = lines_ingested + {ingested:d},
            lines_quarantined = lines_quarantined + {quarantined:d}, lines_duplicate = lines_duplicate + {duplicate:d},
            lines_blank = lines_blank + {blank:d}, events_ingested = events_ingested + {events:d},
            status = '{"done" if finished else "in_progress"}', finished_at = {"now()" if finished else "NULL"}
        WHERE file_hash = {sql_literal(file_hash)}
    """)


def ledger_counts(con: duckdb.DuckDBPyConnection, file_hash: str) -> tuple:
    """format, size_bytes, lines_done, lines_ingested, lines_quarantined, lines_duplicate, lines_blank,
    events_ingested of a file known to the ledger."""
    return con.execute(f"""SELECT format, size_bytes, lines_done, lines_ingested, lines_quarantined,
                                  lines_duplicate, lines_blank, events_ingested
                           FROM raw.ingest_ledger WHERE file_hash = {sql_literal(file_hash)}""").fetchall()[0]


def resolve_quarantine(con: duckdb.DuckDBPyConnection, file_hash: str) -> int:
    """Mark resolved the quarantined lines of earlier readings of the same content (under another mapping)
    that this reading stored and did not quarantine again; returns how many."""
    content = file_hash.split(".m")[0]
    this = sql_literal(file_hash)
    # Only a content read before under another mapping has anything to resolve: most files never were, and
    # they are not to pay for a pass over the raw layer.
    if not con.execute(f"""SELECT 1 FROM raw.ingest_ledger WHERE file_hash <> {this}
                           AND split_part(file_hash, '.m', 1) = {sql_literal(content)} LIMIT 1""").fetchall():
        return 0
    found = con.execute(f"""
        UPDATE raw.quarantine SET resolved_at = now(), resolved_by = {this}
        WHERE resolved_at IS NULL AND file_hash <> {this} AND split_part(file_hash, '.m', 1) = {sql_literal(content)}
          AND line_no IN (SELECT source_line FROM raw.interactions WHERE file_hash = {this}
                          UNION SELECT source_line FROM raw.feedback WHERE file_hash = {this})
          AND line_no NOT IN (SELECT line_no FROM raw.quarantine WHERE file_hash = {this})
    """).fetchall()
    return found[0][0] if found else 0


def quarantined_lines(con: duckdb.DuckDBPyConnection, file_hash: str, limit: int = 5) -> list[tuple[int, str]]:
    """The first quarantined lines of a file: (line number, reason)."""
    return con.execute(f"SELECT line_no, reason FROM raw.quarantine WHERE file_hash = {sql_literal(file_hash)} "
                       f"ORDER BY line_no LIMIT {limit:d}").fetchall()


def handled_since_modified(con: duckdb.DuckDBPyConnection, modified: dict[str, float]) -> set[str]:
    """Of these paths (absolute path -> modification time, seconds since the epoch), the ones ingested to the
    end, partly or not at all because they are damaged (or known as copies) after they were last modified:
    offering them again would add nothing."""
    if not modified or not con.execute("SELECT 1 FROM duckdb_tables() WHERE schema_name = 'raw' "
                                       "AND table_name = 'ingest_files'").fetchall():
        return set()  # a warehouse with no ledger yet has taken nothing in
    import pyarrow as pa  # only the sensor asks this; ingestion itself never imports pyarrow

    con.register("offered_paths", pa.table({"path": pa.array(list(modified), pa.string()),
                                            "mtime": pa.array(list(modified.values()), pa.float64())}))
    try:
        rows = con.execute("""
            SELECT o.path FROM offered_paths o
            JOIN raw.ingest_files f ON f.path = o.path AND epoch(f.seen_at) > o.mtime
            JOIN raw.ingest_ledger l ON l.file_hash = f.file_hash AND l.status IN ('done', 'partial', 'failed')
            """).fetchall()
    finally:
        con.unregister("offered_paths")
    return {row[0] for row in rows}
