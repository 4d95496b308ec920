"""Dagster's SQLite storage in FLYWHEEL_HOME/dagster, with its event log keeping one engine per database file.

Dagster's own SQLite event log makes a new SQLAlchemy engine (and connection) for every statement: a build of
a year of day partitions writes a few thousand events, and that cost, not the data, dominated it (measured:
a 398-day build 87 s with engines made per statement, 43 s with them kept). Files, tables and the layout under
`$DAGSTER_HOME` (history/, schedules/) are Dagster's defaults, so the UI, the daemon and the CLI read the same
history either way, and a home made before keeps its runs.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool


class KeptEngineSqliteEventLogStorage(SqliteEventLogStorage):
    """The SQLite event log, keeping the engines of the most recently used database files (the index, and
    the few runs being written) instead of making one per statement."""

    KEPT = 8

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data)

    def _engine(self, shard: str) -> Engine:
        if self._engines_pid != os.getpid():  # a forked child must not share its parent's SQLite connections
            self._engines, self._engines_pid = OrderedDict(), os.getpid()
        conn_string = self.conn_string_for_shard(shard)
        engine = self._engines.pop(conn_string, None)
        if engine is None:
            # One connection per engine is enough: every use holds the storage's lock (`_db_lock`).
            engine = create_engine(conn_string, poolclass=StaticPool,
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
        self._engines[conn_string] = engine
        while len(self._engines) > self.KEPT:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def dispose(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()


class FlywheelSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage in `$DAGSTER_HOME`, with the event log above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = KeptEngineSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def config_type(cls) -> dict:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict) -> FlywheelSqliteStorage:
        # `flywheel` writes the folder into the copy of dagster.yaml it keeps there; DAGSTER_HOME otherwise.
        return cls.from_local(config_value.get("base_dir") or os.environ["DAGSTER_HOME"], inst_data=inst_data)
