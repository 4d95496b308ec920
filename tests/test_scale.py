"""The scale-out profile: the warehouse as a DuckLake lake (catalog in PostgreSQL, Parquet files in a folder) holds
exactly what the embedded DuckDB file holds for the same logs, and writers that meet on the same data take turns.
Real PostgreSQL; each test its own database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from flywheel import warehouse
from flywheel.settings import Home
from tests.support.services import postgres_database, scale_environment


def _ingest(home: Home, logs: list[Path]) -> None:
    from flywheel.ingest import ingest_file

    with warehouse.session(home) as con:
        for path in logs:
            # the first file as Parquet segments (what large files make), the rest as rows
            ingest_file(con, path, storage="segments" if path == logs[0] else "rows")


def _build(home: Home, logs: list[Path]) -> None:
    from pipelines.launch import publish

    _ingest(home, logs)
    assert publish(home).success


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[Path]:
    from flywheel.simulate import simulate

    folder = tmp_path_factory.mktemp("logs")
    paths = [folder / "first.jsonl", folder / "second.jsonl"]
    simulate(paths[0], 1_500, days=3, seed=5, end=datetime(2026, 11, 3, tzinfo=UTC))
    simulate(paths[1], 1_000, days=4, seed=6, end=datetime(2026, 11, 5, tzinfo=UTC))
    return paths


@dataclass
class Lake:
    home: Home
    runs: list  # the Dagster runs that built and published it


@pytest.fixture(scope="module")
def lake_built(tmp_path_factory, logs) -> Lake:
    """A lake built from the logs by two Celery workers (a run per day) and published, shared by this module's
    tests: its own PostgreSQL database and RabbitMQ virtual host."""
    from pipelines.launch import publish
    from tests.support.services import rabbitmq_vhost

    with postgres_database() as url, rabbitmq_vhost() as broker:
        with pytest.MonkeyPatch.context() as patch:  # Dagster's runs read the profile from the environment
            for name, value in scale_environment(url, broker).items():
                patch.setenv(name, value)
            home = Home.from_env(tmp_path_factory.mktemp("lake")).ensure()
            _ingest(home, logs)
            with _workers(home, 2):
                published = publish(home)
            assert published.success
        yield Lake(home, published.runs)


@pytest.fixture
def lake(lake_built: Lake) -> Home:
    return lake_built.home


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, logs) -> dict[str, tuple[int, int]]:
    """What the embedded profile holds after the same logs: every table's row count and checksum."""
    home = Home.from_env(tmp_path_factory.mktemp("embedded"), env={}).ensure()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLYWHEEL_PROFILE", "embedded")
        _build(home, logs)
    with warehouse.session(home, read_only=True) as con:
        return warehouse.fingerprints(con)


def test_days_build_as_concurrent_runs_on_two_workers_and_the_lake_holds_what_the_file_holds(lake_built, embedded):
    from pipelines.launch import prepare_instance

    lake, expected = lake_built.home, embedded
    day_runs = [run for run in lake_built.runs if getattr(run, "day", "")]
    assert len(day_runs) == 5  # one run per day of the logs, then the publish run
    with prepare_instance(lake) as instance:
        assert _overlapping(instance, [run.run_id for run in day_runs])
    with warehouse.session(lake, read_only=True) as con:
        assert warehouse.is_lake(con)
        found = warehouse.fingerprints(con)
        segments = con.execute("SELECT count(*) FROM raw.segments").fetchall()[0][0]
    assert segments > 0  # the raw layer's Parquet segments are part of the lake too
    assert expected["marts.router_examples"][0] > 0 and expected["raw.quarantine"][0] > 0
    assert {name: found.get(name) for name in expected} == expected
    assert not (lake.root / "warehouse.duckdb").exists()


def test_two_writers_of_the_same_day_take_turns_and_the_rows_are_not_doubled(lake):
    from flywheel.days import DayRange
    from flywheel.sqlmodels import load_models, materialize

    model = next(m for m in load_models() if m.relation == "staging.stg_interactions")
    with warehouse.session(lake, read_only=True) as con:
        day = con.execute("SELECT min(event_date) FROM staging.stg_interactions").fetchall()[0][0]
        before = con.execute("SELECT count(*) FROM staging.stg_interactions").fetchall()[0][0]
    start, failures = threading.Barrier(2), []

    def write() -> None:
        try:
            with warehouse.session(lake) as con:
                start.wait()
                materialize(con, model, DayRange(day, day))
        except Exception as error:  # a refused writer would also do: never a silent double
            failures.append(error)

    writers = [threading.Thread(target=write) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    with warehouse.session(lake, read_only=True) as con:
        after = con.execute("SELECT count(*) FROM staging.stg_interactions").fetchall()[0][0]
    assert failures == [] and after == before


def test_the_same_file_ingested_by_two_processes_at_once_is_stored_once(lake, tmp_path):
    from flywheel.ingest import ingest_file
    from flywheel.simulate import simulate

    extra = tmp_path / "extra.jsonl"
    simulate(extra, 300, days=1, seed=9, malformed_rate=0, end=datetime(2026, 3, 1, tzinfo=UTC))
    start, reports = threading.Barrier(2), []

    def ingest() -> None:
        with warehouse.session(lake) as con:
            start.wait()
            reports.append(ingest_file(con, extra))

    writers = [threading.Thread(target=ingest) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert sorted(r.outcome for r in reports) == ["already_ingested", "ingested"]
    with warehouse.session(lake, read_only=True) as con:
        stored = con.execute("SELECT count(*), count(DISTINCT request_id) FROM raw.interactions "
                             "WHERE source_file = ?", [str(extra)]).fetchall()[0]
    assert stored[0] == stored[1] == 300


@pytest.mark.parametrize("query", [
    "SELECT * FROM postgres_query('__ducklake_metadata_warehouse', 'DROP SCHEMA flywheel_lake CASCADE')",
    "SELECT * FROM __ducklake_metadata_warehouse.flywheel_lake.ducklake_data_file",
    "EXPLAIN ANALYZE SELECT * FROM ducklake_cleanup_old_files('warehouse', cleanup_all => true)",
    'DESCRIBE SELECT * FROM "postgres_query"(\'x\', \'y\')',
])
def test_the_query_tool_reads_the_lake_but_not_its_catalog_database(lake, query):
    with warehouse.query_session(lake) as con:
        assert warehouse.run_query(con, "SELECT count(*) FROM marts.router_examples").fetchall()[0][0] > 0
        with pytest.raises(warehouse.RefusedStatement, match="reaches past the warehouse"):
            warehouse.run_query(con, query)


def test_an_unreachable_catalog_is_named(tmp_path):
    home = Home.from_env(tmp_path, env=scale_environment("postgresql://postgres@127.0.0.1:1/none"))
    with pytest.raises(warehouse.WarehouseUnreachableError, match="FLYWHEEL_POSTGRES_URL"):
        warehouse.connect(home)


def test_a_typo_in_the_profile_is_named():
    with pytest.raises(ValueError, match="FLYWHEEL_PROFILE='scaled'"):
        Home.from_env("/tmp/x", env={"FLYWHEEL_PROFILE": "scaled"})


# -- Dagster on PostgreSQL, steps on two Celery workers -------------------------------------------------------------
@pytest.fixture
def scale_home(tmp_path, monkeypatch) -> Home:
    """A home on the scale profile: its own PostgreSQL database, RabbitMQ virtual host and lake folder."""
    from tests.support.services import rabbitmq_vhost

    with postgres_database() as url, rabbitmq_vhost() as broker:
        for name, value in scale_environment(url, broker).items():
            monkeypatch.setenv(name, value)
        yield Home.from_env(tmp_path / "scale").ensure()


@contextmanager
def _workers(home: Home, count: int) -> Iterator[list[subprocess.Popen]]:
    from pipelines.scale import worker_process, workers_answering

    started = [worker_process(home, name=f"test-{n}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) for n in range(count)]
    try:
        deadline = time.monotonic() + 60
        while len(workers_answering(home, timeout_s=1)) < count:
            assert time.monotonic() < deadline, "the workers did not come up"
        yield started
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            process.wait(30)


def _overlapping(instance, run_ids: list[str]) -> bool:
    records = [instance.get_run_record_by_id(run_id) for run_id in run_ids]
    spans = sorted((r.start_time, r.end_time) for r in records)
    return any(later[0] < earlier[1] for earlier, later in pairwise(spans))


def _wait_for_a_step_on(home: Home, worker: str, timeout_s: float = 120) -> None:
    """Until the named worker is running a step (Celery's own view of its active tasks)."""
    from celery import Celery

    app = Celery("dagster", broker=home.scale.broker_url)
    try:
        deadline = time.monotonic() + timeout_s
        while not any(name.startswith(worker) and tasks
                      for name, tasks in (app.control.inspect(timeout=0.5).active() or {}).items()):
            assert time.monotonic() < deadline, f"{worker} never ran a step"
    finally:
        app.close()


def _steps_started_twice(instance, run_id: str) -> list[str]:
    import dagster as dg

    started = [e.dagster_event.step_key for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)]
    return sorted({step for step in started if started.count(step) > 1})


def test_a_worker_killed_mid_step_leaves_nothing_lost_or_doubled(scale_home, logs):
    from flywheel.ingest import ingest_file
    from pipelines.launch import build, prepare_instance

    with warehouse.session(scale_home) as con:
        ingest_file(con, logs[0])
    with _workers(scale_home, 2) as (first, _):
        assert build(scale_home).success
        with warehouse.session(scale_home, read_only=True) as con:
            expected = warehouse.fingerprints(con)
        outcome: list = []
        rebuild = threading.Thread(target=lambda: outcome.append(build(scale_home, everything=True)))
        rebuild.start()
        _wait_for_a_step_on(scale_home, "test-0@")
        os.killpg(first.pid, signal.SIGKILL)
        rebuild.join(600)
        assert not rebuild.is_alive()
        failed = [run.day for run in outcome[0].runs if not run.success]
        with prepare_instance(scale_home) as instance:
            again = [run.day for run in outcome[0].runs if _steps_started_twice(instance, run.run_id)]
        assert failed or again  # the step the worker died in: its run failed, or another worker ran it again
        if failed:  # the step the worker died in failed its run: running those days again finishes the job
            assert build(scale_home, only=[date.fromisoformat(d) for d in failed], everything=True).success
    with warehouse.session(scale_home, read_only=True) as con:
        assert warehouse.fingerprints(con) == expected
