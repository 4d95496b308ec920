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

import duckdb
import pytest

from flywheel import warehouse
from flywheel.days import DayRange
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
    assert [run.day for run in day_runs] == ["2026-10-31..2026-11-02", "2026-11-03..2026-11-04"]  # one per worker
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


def test_two_writers_each_waiting_for_what_the_other_holds_are_told_at_once_not_after_the_lock_timeout(tmp_path):
    """Nested `writing` blocks: each writer holds one key and asks for the other's. PostgreSQL sees the cycle
    only when a writer's keys are on one session; one writer is refused with a reason, the other goes on."""
    holding, outcomes = threading.Barrier(2), {}
    with postgres_database() as url:
        home = Home.from_env(tmp_path, env=scale_environment(url)).ensure()
        with warehouse.session(home):
            pass  # the lake made

        def write(first: str, second: str) -> None:
            started = time.monotonic()
            try:
                with warehouse.session(home, read_only=True) as con, warehouse.writing(con, first, timeout_s=60):
                    holding.wait()
                    with warehouse.writing(con, second, timeout_s=60):
                        outcomes[first] = ("done", time.monotonic() - started)
            except warehouse.WarehouseBusyError as error:
                outcomes[first] = (str(error), time.monotonic() - started)

        writers = [threading.Thread(target=write, args=keys) for keys in (("test:a", "test:b"), ("test:b", "test:a"))]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(120)
    verdicts = [verdict for verdict, _ in outcomes.values()]
    assert verdicts.count("done") == 1 and any("run it again" in v for v in verdicts), outcomes
    assert max(seconds for _, seconds in outcomes.values()) < 30  # PostgreSQL's deadlock check, not the timeout


def test_the_same_file_ingested_by_two_processes_at_once_is_stored_once(lake, tmp_path):
    from flywheel.ingest import ingest_file
    from flywheel.ingest.raw_layer import ensure_raw_layer
    from flywheel.simulate import simulate

    # a second, empty lake in the same PostgreSQL database (its own catalog schema): the module's lake stays as
    # its logs made it
    lake = Home.from_env(tmp_path / "home", env={**lake.environment(), "FLYWHEEL_LAKE_SCHEMA": "second_lake",
                                                  "FLYWHEEL_LAKE_DATA": str(tmp_path / "lake")}).ensure()
    with warehouse.session(lake) as con:  # the lake made before its writers meet, as a first ingest makes it
        ensure_raw_layer(con)
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


def _wait_for_a_step(home: Home, timeout_s: float = 120) -> tuple[str, str, str]:
    """Until a worker runs a step (Celery's own view of its active tasks): the worker's name, the step's run id
    and key."""
    from celery import Celery

    app = Celery("dagster", broker=home.scale.broker_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            for name, tasks in (app.control.inspect(timeout=0.5).active() or {}).items():
                if tasks:
                    from dagster._grpc.types import ExecuteStepArgs
                    from dagster._serdes import unpack_value

                    step = unpack_value(tasks[0]["kwargs"]["execute_step_args_packed"], as_type=ExecuteStepArgs)
                    return name, step.run_id, step.step_keys_to_execute[0]
            assert time.monotonic() < deadline, "no worker ran a step"
    finally:
        app.close()


def _step_succeeded(instance, run_id: str, step_key: str) -> bool:
    import dagster as dg

    return any(e.dagster_event.step_key == step_key
               for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS))


def test_a_worker_killed_mid_step_leaves_nothing_lost_or_doubled(lake_built, embedded, monkeypatch):
    from pipelines.launch import build, prepare_instance

    lake, day = lake_built.home, date(2026, 11, 2)
    for name, value in lake.environment().items():
        monkeypatch.setenv(name, value)
    with _workers(lake, 2) as workers:
        outcome: list = []
        rebuild = threading.Thread(target=lambda: outcome.append(build(lake, since=day, until=day, everything=True)))
        rebuild.start()
        worker, run_id, step = _wait_for_a_step(lake)
        os.killpg(workers[int(worker.split("@")[0].removeprefix("test-"))].pid, signal.SIGKILL)
        rebuild.join(600)
        assert not rebuild.is_alive()
        failed = [run.run_id for run in outcome[0].runs if not run.success]
        with prepare_instance(lake) as instance:
            finished_elsewhere = _step_succeeded(instance, run_id, step)
        # the step the worker died in went to the other worker (it is acknowledged only once done), or its run
        # failed and is run again
        assert finished_elsewhere or run_id in failed
        if failed:  # the day built again finishes the job
            assert build(lake, since=day, until=day, everything=True).success
    with warehouse.session(lake, read_only=True) as con:
        found = warehouse.fingerprints(con)
    assert {name: found.get(name) for name in embedded} == embedded


def test_a_lake_whose_files_are_in_object_storage_holds_what_the_file_holds(tmp_path, logs, embedded, monkeypatch):
    """FLYWHEEL_LAKE_DATA as s3://bucket/prefix, on an S3-compatible server: ingest (a file that asks for Parquet
    segments included: in object storage the lake writes every file itself, in its transactions), the SQL models,
    and the query tool; nothing lands in a local folder."""
    import boto3

    from flywheel.dedup import MinHasher, build_clusters
    from flywheel.reference import write_model_prices
    from flywheel.sqlmodels import load_models, materialize
    from tests.support.services import s3_bucket
    from tests.test_cli import run_cli

    with postgres_database() as url, s3_bucket() as (bucket, credentials):
        for name, value in {**scale_environment(url), **credentials,
                            "FLYWHEEL_LAKE_DATA": f"s3://{bucket}/lake/"}.items():
            monkeypatch.setenv(name, value)
        home = Home.from_env(tmp_path / "home").ensure()
        assert home.lake_folder is None and not warehouse.exists(home)
        _ingest(home, logs)
        with warehouse.session(home) as con:
            write_model_prices(con)
            for model in load_models():
                if model.layer == "marts" or model.name in ("int_signals", "int_labeling_candidates"):
                    continue  # these read what publishing and labeling make
                if model.name == "int_cluster_members":
                    build_clusters(con, MinHasher())
                materialize(con, model, DayRange(date(2026, 10, 1), date(2026, 11, 30))
                            if model.materialized == "incremental" else None)
        assert warehouse.exists(home)
        with warehouse.query_session(home) as con:
            found = warehouse.fingerprints(con)
            assert warehouse.run_query(con, "SELECT count(DISTINCT request_id) FROM staging.stg_interactions"
                                       ).fetchall()[0][0] == embedded["staging.stg_interactions"][0]
            with pytest.raises(duckdb.Error):  # the query tool's fence holds on this lake too
                warehouse.run_query(con, f"SELECT * FROM read_text({str(logs[0])!r})").fetchall()
        # a bucket that is not there: the file is failed (tried again by the next run) and the command says which
        # file it could not write
        missing = run_cli("ingest", str(logs[1]), home=tmp_path / "elsewhere", check=False,
                          env={"FLYWHEEL_LAKE_DATA": f"s3://no-{bucket}/lake", "FLYWHEEL_LAKE_SCHEMA": "elsewhere"})
        assert ": failed" in missing.stderr and f"s3://no-{bucket}/lake/" in missing.stderr
        assert "Traceback" not in missing.stdout + missing.stderr
        stored = boto3.client("s3", endpoint_url=credentials["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"]
                              ).list_objects_v2(Bucket=bucket, Prefix="lake/")
    assert stored["KeyCount"] > 0 and all(o["Key"].endswith(".parquet") for o in stored["Contents"])
    assert not (home.root / "lake").exists() and not (home.root / "warehouse.duckdb").exists()
    # the same raw views, but their events stored otherwise (no segments: rows in the lake's own files); curation
    # is made by publishing, which this test leaves out
    compared = {name for name in found if name in embedded and name != "raw.segments"
                and not name.endswith("_rows") and not name.startswith("curation.")}
    assert {"raw.interactions", "raw.quarantine", "staging.stg_interactions", "intermediate.int_interactions",
            "intermediate.int_cluster_members"} <= compared
    assert {name: found[name] for name in compared} == {name: embedded[name] for name in compared}


# -- labeling on the lake (last in this module: it adds labeling rows the embedded fingerprints above lack) ---------
def test_labeling_on_the_lake_queues_pushes_and_pulls_each_label_once(lake, argilla_target):
    from flywheel.labeling import sampling, sync
    from flywheel.labeling.datasets import RESPONSE_REVIEW, load_sampling
    from tests.test_argilla import annotator, respond, server_ids, unique_spec

    spec = unique_spec(RESPONSE_REVIEW)
    with warehouse.session(lake) as con:
        sampling.sample_response_review(con, spec, load_sampling()["response_review"], budget=4)
        assert sync.push(con, argilla_target, spec).pushed == 4
        assert sync.push(con, argilla_target, spec).pushed == 0  # nothing sent twice
        client = argilla_target.client()
        labeller = annotator(client, argilla_target.workspace, "lake-annotator")
        ids = server_ids(client, spec.name, argilla_target.workspace)
        first, second = sorted(ids)[:2]
        respond(labeller, ids[first], {"verdict": "good", "quality": 5})
        respond(labeller, ids[second], {}, status="discarded")
        pulled = sync.pull(con, argilla_target, spec, agreement_threshold=0.5)
        again = sync.pull(con, argilla_target, spec, agreement_threshold=0.5)
        labels = con.execute("SELECT record_id, status FROM labeling.labels ORDER BY record_id").fetchall()
        queued = con.execute("SELECT count(*) FROM labeling.queue WHERE dataset = ?", [spec.name]).fetchall()[0][0]
    assert (pulled.new, again.new, again.changed) == (2, 0, 0)
    assert labels == sorted([(first, "submitted"), (second, "discarded")]) and queued == 4
