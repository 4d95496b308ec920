"""Resources (where the warehouse and landing folder are) and the executor, chosen per profile."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from flywheel import warehouse
from flywheel.settings import Home


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse under FLYWHEEL_HOME (embedded default).

    `home` empty means: read FLYWHEEL_HOME when the run executes, not when the code location loads.
    """

    home: str = ""

    @property
    def layout(self) -> Home:
        return Home.from_env(self.home or None).ensure()

    def connect(self, log: dg.DagsterLogManager | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return warehouse.connect(self.layout, read_only=read_only,
                                 on_wait=log.info if log else None)

    @contextmanager
    def session(self, log: dg.DagsterLogManager | None = None, read_only: bool = False
                ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for the length of a `with` block, closed whatever happens."""
        con = self.connect(log, read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    @property
    def landing(self) -> Path:
        return self.layout.landing


class ArgillaResource(dg.ConfigurableResource):
    """The Argilla that labeling talks to: ARGILLA_API_URL + ARGILLA_API_KEY when set (remote), otherwise the
    local server under FLYWHEEL_HOME, started on first use when `start_local` (the embedded default)."""

    home: str = ""
    start_local: bool = True

    def target(self, log: dg.DagsterLogManager | None = None):
        from flywheel.labeling.client import resolve_target

        def say(message: str) -> None:  # starting the local server takes ~30 s: the person waiting sees why
            print(message, file=sys.stderr, flush=True)
            if log:
                log.info(message)

        return resolve_target(Home.from_env(self.home or None).ensure(), start_local=self.start_local, say=say)


def resources_for(home: str = "") -> dict[str, object]:
    """`home` empty: FLYWHEEL_HOME as the run finds it (the Dagster UI's runs); the CLI passes its own. The same
    on both profiles: the warehouse resource opens the profile's warehouse."""
    return {"warehouse": WarehouseResource(home=home), "argilla": ArgillaResource(home=home)}


def executor_for(home: Home) -> dg.ExecutorDefinition:
    """Embedded: steps in subprocesses of the run (Dagster's default). Scale: steps as Celery tasks, run by
    `flywheel worker` processes on any machine that reaches the broker, PostgreSQL and the lake's folder."""
    if not home.lake:
        return dg.multi_or_in_process_executor
    from pipelines.scale import celery_executor

    return celery_executor(home)
