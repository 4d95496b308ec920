"""The warehouse: opening it safely from many processes, sessions and transactions. What the raw layer holds
and how it is laid out is `flywheel/ingest/raw_layer.py`'s.

Two profiles, one SQL: the embedded default is one DuckDB file (one writing process at a time: a writer waits
for the file's lock); the scale profile is a DuckLake lake attached as the connection's default catalog, its
catalog in PostgreSQL and its Parquet files in a folder every worker sees, so processes on several machines
write at once. Either way a connection reads and writes `raw.*`, `staging.*`, ..., `marts.*` by those names."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from flywheel.settings import Home, WarehouseOptions, is_url, owner_only, private_folder

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


T = TypeVar("T")
LAKE = "warehouse"  # the lake's catalog name in a connection


def connect(
    home: Home,
    *,
    read_only: bool = False,
    lock_timeout_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the home's warehouse, waiting (with jittered back-off) while another process holds its lock, up to
    the home's lock timeout unless `lock_timeout_s` says otherwise (a sensor's tick must not wait long)."""
    if home.lake:
        return _connect_lake(home, read_only)
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


def _extension(name: str, entrypoint: str, home: Home) -> Path:
    """A DuckDB extension from its PyPI package (duckdb-extension-<name>): INSTALL would download it. DuckDB
    finds an extension's entry point by its file name, which for postgres is postgres_scanner."""
    import importlib

    package = Path(importlib.import_module(f"duckdb_extension_{name}").__file__).parent  # type: ignore[arg-type]
    shipped = package / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not shipped.exists():
        raise RuntimeError(f"duckdb-extension-{name} has no build for DuckDB {duckdb.__version__} ({shipped})")
    if name == entrypoint:
        return shipped
    named = private_folder(home.root / "duckdb_extensions") / f"{entrypoint}.duckdb_extension"
    if named.resolve() != shipped.resolve():
        link = named.with_name(f".{named.name}.{os.getpid()}")
        link.unlink(missing_ok=True)
        link.symlink_to(shipped)
        os.replace(link, named)  # another process may do the same: the last rename wins, both are right
    return named


def _connect_lake(home: Home, read_only: bool) -> duckdb.DuckDBPyConnection:
    # Spilled intermediates go under FLYWHEEL_HOME, a folder per process (DuckDB's temporary file names would
    # collide between processes), not into `.tmp` of whatever folder the worker started in.
    spill = private_folder(home.root / "duckdb_tmp") / str(os.getpid())  # DuckDB removes it on close
    con = duckdb.connect(config={"memory_limit": home.warehouse_options.memory_limit, "temp_directory": str(spill)})
    try:
        for name, entrypoint in (("postgres", "postgres_scanner"), ("ducklake", "ducklake")):
            con.execute(f"LOAD {sql_literal(str(_extension(name, entrypoint, home)))}")
        folder = home.lake_folder
        if folder is None:
            con.execute(f"LOAD {sql_literal(str(_extension('httpfs', 'httpfs', home)))}")
            object_storage_secret(con, os.environ)
        elif not read_only:
            private_folder(folder)
        elif not folder.exists():
            raise FileNotFoundError(f"no lake at {folder}: ingest something first (flywheel ingest/run)")
        options = [f"DATA_PATH {sql_literal(home.lake_data + ('/' if folder is None else os.sep))}",
                   f"METADATA_SCHEMA {sql_literal(home.scale.lake_schema)}", *(["READ_ONLY"] if read_only else [])]
        try:
            con.execute(f"ATTACH {sql_literal('ducklake:postgres:' + home.scale.postgres_url)} AS {LAKE} "
                        f"({', '.join(options)})")
        except duckdb.Error as error:
            raise WarehouseUnreachableError(
                f"the lake's catalog in PostgreSQL ({home.scale.postgres_url}, schema {home.scale.lake_schema}; "
                f"FLYWHEEL_POSTGRES_URL) could not be opened: {str(error).splitlines()[0]}") from error
        con.execute(f"USE {LAKE}")
        # Every commit takes the lake's next snapshot number; writers that commit at the same moment retry, and
        # several busy workers need more than DuckLake's default 10 tries (about 11 s in all).
        con.execute("SET ducklake_max_retry_count = 100")
        return con
    except BaseException:
        con.close()
        raise


def object_storage_secret(con: duckdb.DuckDBPyConnection, environ: Mapping[str, str]) -> None:
    """S3 credentials for the lake's files, from the standard AWS variables (an S3-compatible store, such as
    MinIO, by AWS_ENDPOINT_URL); held by this connection only, never written anywhere. Without a key DuckDB
    reads and writes anonymously."""
    settings = {"KEY_ID": environ.get("AWS_ACCESS_KEY_ID", ""), "SECRET": environ.get("AWS_SECRET_ACCESS_KEY", ""),
                "SESSION_TOKEN": environ.get("AWS_SESSION_TOKEN", ""),
                "REGION": environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or ""
    if endpoint:
        settings |= {"ENDPOINT": endpoint.split("://", 1)[-1].rstrip("/"), "URL_STYLE": "path"}
    parts = [f"{name} {sql_literal(value)}" for name, value in settings.items() if value]
    if endpoint.startswith("http://"):
        parts.append("USE_SSL false")
    con.execute(f"CREATE OR REPLACE TEMPORARY SECRET flywheel_lake_files (TYPE s3, {', '.join(parts)})")


class WarehouseUnreachableError(RuntimeError):
    pass


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
            lake = [home.lake_data + ("/" if home.lake_folder is None else os.sep)] if home.lake else []
            folders = [str(home.root) + os.sep, *lake]
            con.execute(f"SET allowed_directories = [{', '.join(sql_literal(f) for f in folders)}]")
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
    outside = _outside_the_warehouse(con, query)
    if outside:
        raise RefusedStatement(f"{outside} reaches past the warehouse's tables (the lake's catalog database or "
                               "its maintenance): not run here")
    return con.sql(query)


# A lake's connection carries the PostgreSQL extension and DuckLake's functions: postgres_query() would run any
# statement in the catalog's database, and DuckLake's maintenance functions delete files, all from a SELECT.
_FOREIGN_FUNCTION = re.compile(r"^(postgres_|ducklake_)", re.IGNORECASE)
_FOREIGN_CATALOG = re.compile(r"^__ducklake_metadata", re.IGNORECASE)
_FOREIGN_TEXT = re.compile(r"\b(postgres_|ducklake_)\w*[\"`]?\s*\(|__ducklake_metadata", re.IGNORECASE)


def _outside_the_warehouse(con: duckdb.DuckDBPyConnection, query: str) -> str | None:
    """The function or catalog of `query` that is not the warehouse's to read, if any."""
    import json

    body = re.sub(r"^\s*EXPLAIN(\s+ANALYZE)?\s", "", query, flags=re.IGNORECASE)
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [body]).fetchall()[0][0])
    if tree.get("error"):  # SHOW, DESCRIBE, SUMMARIZE have no tree here: their text tells
        found = _FOREIGN_TEXT.search(query)
        return found.group(0).rstrip("(") if found else None
    pending: list[object] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            name, catalog = node.get("function_name"), node.get("catalog_name")
            if isinstance(name, str) and _FOREIGN_FUNCTION.search(name):
                return f"{name}()"
            if isinstance(catalog, str) and _FOREIGN_CATALOG.search(catalog):
                return catalog
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return None


def sql_literal(text: str) -> str:
    """A string as a DuckDB SQL literal, for statements that must not bind parameters (see the loader)."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class _Locks:
    session: Any                                   # the PostgreSQL connection holding them
    held: set[str] = field(default_factory=set)


_LOCKS: dict[int, _Locks] = {}  # per open DuckDB connection (by id): `writing` blocks nest


@contextmanager
def writing(con: duckdb.DuckDBPyConnection, *keys: str, shared: tuple[str, ...] = (),
            timeout_s: float = WarehouseOptions.lock_timeout_s) -> Iterator[None]:
    """Hold `keys` exclusively (and `shared` with other holders of them) while writing: two writers of the same
    key (a table's day, a file's ingestion) take turns instead of both committing and doubling the rows.

    A lake lets any number of processes write; its transactions do not see that two of them each deleted, then
    inserted, the same day. PostgreSQL advisory locks, taken in one order on a connection of their own, say who
    goes first; they go when the block ends, or with the process. A block inside another takes its keys on the
    outer block's PostgreSQL session, so that two writers each waiting for what the other holds are a deadlock
    PostgreSQL sees (and ends in about a second), not two sessions waiting out the lock timeout. The embedded
    file needs none: one process writes it at a time."""
    found = con.execute("SELECT path, options FROM duckdb_databases() WHERE database_name = current_database() "
                        "AND type = 'ducklake'").fetchall()
    if not found:
        yield
        return
    import psycopg2

    catalog, options = found[0]
    outer = id(con) not in _LOCKS
    if outer:
        session = psycopg2.connect(catalog.removeprefix("postgres:"))
        session.autocommit = True
        with session.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'")
        _LOCKS[id(con)] = _Locks(session)
    locks = _LOCKS[id(con)]
    namespace = f"{catalog}|{options.get('metadata_schema', '')}|"
    wanted = [(key, "_shared") for key in sorted(set(shared) - set(keys) - locks.held)] + [
        (key, "") for key in sorted(set(keys) - locks.held)]
    taken: list[tuple[str, str]] = []
    try:
        with locks.session.cursor() as cursor:
            for key, kind in wanted:
                cursor.execute(f"SELECT pg_advisory_lock{kind}(hashtextextended(%s, 0))", [namespace + key])
                taken.append((key, kind))
                locks.held.add(key)
        yield
    except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected) as error:
        if isinstance(error, psycopg2.errors.DeadlockDetected):
            raise WarehouseBusyError(f"another writer waited for what this one held while holding "
                                     f"{', '.join(sorted(keys or shared))}: run it again") from error
        raise WarehouseBusyError(f"another writer held {', '.join(sorted(keys or shared))} for "
                                 f"{timeout_s:.0f}s") from error
    finally:
        if outer:  # closing the session lets go of every key at once
            _LOCKS.pop(id(con), None)
            locks.session.close()
        else:
            with locks.session.cursor() as cursor:
                for key, kind in reversed(taken):
                    cursor.execute(f"SELECT pg_advisory_unlock{kind}(hashtextextended(%s, 0))", [namespace + key])
                    locks.held.discard(key)


def retrying_conflicts(write: Callable[[], T], attempts: int = 4) -> T:
    """`write` again when a lake refused its commit for another writer's (the locks of `writing` keep two writers
    off the same rows, so such a conflict is about shared catalog entries, and a second try goes through)."""
    for attempt in range(attempts):
        try:
            return write()
        except duckdb.TransactionException as error:
            if "DuckLake" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1) * (0.5 + random.random()))
    raise AssertionError("unreachable")


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


def storage_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """What the warehouse's own files are named after and kept beside: the DuckDB file, or `<data path>/warehouse`
    for a lake in a folder; None in memory or for a lake in object storage (the lake writes all its files)."""
    found = con.execute("SELECT path, type, options FROM duckdb_databases() "
                        "WHERE database_name = current_database()").fetchall()
    if not found or not found[0][0]:
        return None
    path, kind, options = found[0]
    if kind == "ducklake":
        if is_url(options["data_path"]):  # object storage: files are written by the lake, none beside it
            return None
        return Path(options["data_path"]).resolve() / "warehouse"
    return Path(path).resolve()


_COLUMN_KEY = re.compile(r"\s+PRIMARY KEY\b", re.IGNORECASE)
_TABLE_KEY = re.compile(r",\s*PRIMARY KEY\s*\([^)]*\)", re.IGNORECASE)


def create(con: duckdb.DuckDBPyConnection, ddl: str) -> None:
    """Run `CREATE ... IF NOT EXISTS` statements on either profile. DuckLake has no key constraints: there a key
    column is only NOT NULL, and the statements that write these tables keep keys unique themselves (MERGE, or
    INSERT ... WHERE NOT EXISTS), as they do on the embedded profile."""
    if not is_lake(con):
        con.execute(ddl)
        return
    # two processes replacing the same view, or making the same table, at once: a lake refuses the second
    with writing(con, "catalog"):
        con.execute(_COLUMN_KEY.sub(" NOT NULL", _TABLE_KEY.sub("", ddl)))


def new_records(table: str, key: str, placeholders: str) -> str:
    """The rest of an `INSERT INTO <table> (<columns>)` that adds a row only when no row has its `key` (the first
    column): ON CONFLICT DO NOTHING needs a key constraint, which a lake's tables do not have."""
    return (f"SELECT * FROM (VALUES ({placeholders})) new_row WHERE NOT EXISTS "
            f"(SELECT 1 FROM {table} WHERE {table}.{key} = new_row.col0)")


def is_lake(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT type = 'ducklake' FROM duckdb_databases() "
                       "WHERE database_name = current_database()").fetchall() == [(True,)]


def exists(home: Home) -> bool:
    """Whether anything was ever written to the home's warehouse."""
    if not home.lake:
        return home.warehouse.exists()
    if home.lake_folder is not None and not home.lake_folder.exists():
        return False
    if home.lake_folder is None and not _catalog_exists(home):
        return False
    with session(home, read_only=True) as con:
        return bool(con.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
                                "LIMIT 1").fetchall())


def _catalog_exists(home: Home) -> bool:
    import psycopg2

    with closing(psycopg2.connect(home.scale.postgres_url)) as catalog, catalog.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                       "AND table_name = 'ducklake_snapshot'", [home.scale.lake_schema])
        return cursor.fetchone() is not None


# Columns that say when or from where a table was written, not what it holds: two warehouses built from the same
# logs differ there and nowhere else.
_CIRCUMSTANTIAL = re.compile(r"(_at|^source_file|^first_path|^path)$")


def fingerprints(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int]]:
    """Every table's and view's row count and an order-independent checksum of its contents (circumstantial
    columns left out), by `schema.name`: what two warehouses of the same data must agree on."""
    relations = con.execute("""
        SELECT schema_name || '.' || table_name, list(column_name ORDER BY column_index)
        FROM duckdb_columns() WHERE database_name = current_database() AND schema_name <> 'information_schema'
        GROUP BY ALL ORDER BY 1""").fetchall()
    out = {}
    for relation, columns in relations:
        kept = [c for c in columns if not _CIRCUMSTANTIAL.search(c)]
        row = "(" + ", ".join(f'"{c}"' for c in kept) + ")" if kept else "1"
        out[relation] = tuple(con.execute(f"SELECT count(*), coalesce(sum(hash({row})), 0)::HUGEINT % 1000000007 "
                                          f"FROM {relation}").fetchall()[0])
    return out
