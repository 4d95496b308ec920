"""Real Dagster materializations and sensor ticks against a real DuckDB file."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from flywheel import warehouse
from flywheel.simulate import simulate
from tests.factories import interaction, write_lines


@pytest.fixture
def instance(home, monkeypatch):
    from pipelines.launch import prepare_instance

    monkeypatch.setenv("DAGSTER_HOME", str(home.dagster_home))
    return prepare_instance(home)


def _defs():
    from pipelines.definitions import defs

    return defs


def _materialize(instance, run_config=None):
    job = _defs().resolve_job_def("ingest_job")
    return job.execute_in_process(instance=instance, run_config=run_config or {})


def test_ingest_job_materializes_raw_assets_with_counts_in_metadata(home, instance):
    counts = simulate(home.landing / "sim.jsonl", 2_000, seed=3)
    result = _materialize(instance)
    assert result.success
    materializations = {m.asset_key.to_user_string(): m.metadata
                        for m in result.asset_materializations_for_node("raw_events")}
    assert set(materializations) == {"raw/interactions", "raw/feedback", "raw/quarantine"}
    interactions = materializations["raw/interactions"]
    assert interactions["rows_new"].value == interactions["rows_total"].value == counts["interactions"]
    assert materializations["raw/feedback"]["rows_total"].value == counts["feedback"]
    assert materializations["raw/quarantine"]["rows_new"].value == counts["malformed"]
    assert interactions["all_files_reconcile"].value is True
    assert interactions["parquet_segments"].value == 0  # a small file's events are rows in the DuckDB file
    assert "sim.jsonl" in interactions["files"].value and "| request_id |" in interactions["preview"].value

    again = _materialize(instance)  # a re-run adds nothing
    metadata = {m.asset_key.to_user_string(): m.metadata for m in again.asset_materializations_for_node("raw_events")}
    assert metadata["raw/interactions"]["rows_new"].value == 0
    assert metadata["raw/interactions"]["rows_total"].value == counts["interactions"]
    # the instance recorded both runs, as the UI will show them
    assert len(instance.get_runs()) == 2


def test_landing_sensor_requests_a_run_only_for_new_or_changed_files(home, instance):
    from pipelines.defs.ingest.jobs import landing_sensor

    context = dg.build_sensor_context(instance=instance)
    assert isinstance(landing_sensor(context), dg.SkipReason)
    write_lines(home.landing / "a.jsonl", [interaction("a")])
    write_lines(home.landing / ".b.jsonl.part", [interaction("b")])  # still being written: ignored
    request = landing_sensor(context)
    assert isinstance(request, dg.RunRequest)
    assert request.run_config["ops"]["raw_events"]["config"]["paths"] == ["a.jsonl"]
    context = dg.build_sensor_context(instance=instance, cursor=context.cursor)
    assert isinstance(landing_sensor(context), dg.SkipReason)
    write_lines(home.landing / "sub" / "c.jsonl", [interaction("c")])
    request = landing_sensor(dg.build_sensor_context(instance=instance, cursor=json.dumps(
        json.loads(context.cursor))))
    assert request.run_config["ops"]["raw_events"]["config"]["paths"] == ["sub/c.jsonl"]


def test_a_sensor_run_ingests_the_files_it_names(home, instance):
    from pipelines.defs.ingest.jobs import landing_sensor

    write_lines(home.landing / "a.jsonl", [interaction("a1"), interaction("a2")])
    request = landing_sensor(dg.build_sensor_context(instance=instance))
    result = _materialize(instance, request.run_config)
    assert result.success
    with warehouse.session(home.warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.interactions").fetchall() == [(2,)]


def test_ingestion_triggers_a_rebuild_of_exactly_the_days_it_touched(home, instance):
    from pipelines.defs.sql_models.jobs import touched_days_sensor

    write_lines(home.landing / "a.jsonl", [interaction("a1", timestamp="2026-11-20T10:00:00Z"),
                                          interaction("a2", timestamp="2026-11-21T10:00:00Z")])
    assert _materialize(instance).success
    requests = list(touched_days_sensor(dg.build_sensor_context(instance=instance, definitions=_defs())))
    assert sorted(r.partition_key for r in requests) == ["2026-11-20", "2026-11-21"]
    result = _defs().resolve_job_def("daily_models_job").execute_in_process(instance=instance,
                                                                            partition_key="2026-11-21")
    assert result.success
    with warehouse.session(home.warehouse, read_only=True) as con:
        rows = con.execute("SELECT request_id FROM intermediate.int_interactions").fetchall()
    assert rows == [("a2",)]


def test_late_feedback_touches_the_day_of_its_interaction(home, instance):
    from tests.factories import feedback

    write_lines(home.landing / "a.jsonl", [interaction("a1", timestamp="2026-11-20T10:00:00Z")])
    assert _materialize(instance).success
    write_lines(home.landing / "b.jsonl", [feedback("a1", timestamp="2026-11-24T10:00:00Z")])
    result = _materialize(instance)
    (event,) = [m for m in result.asset_materializations_for_node("raw_events")
                if m.asset_key == dg.AssetKey(["raw", "interactions"])]
    assert list(event.metadata["days_touched"].value) == ["2026-11-20"]


def test_the_schedules_run_ingestion_and_yesterdays_models(home, instance):
    from pipelines.defs.ingest.jobs import daily_ingest_schedule
    from pipelines.defs.sql_models.jobs import daily_models_schedule

    assert (daily_ingest_schedule.cron_schedule, daily_ingest_schedule.job_name) == ("0 3 * * *", "ingest_job")
    assert daily_models_schedule.job_name == "daily_models_job"


def test_error_expectations_block_downstream_models_and_report_failures(home, instance):
    bad = interaction("slow", timestamp="2026-11-20T11:00:00Z", latency_ms=9_000_000.0)
    write_lines(home.landing / "a.jsonl", [interaction("ok", timestamp="2026-11-20T10:00:00Z"), bad])
    assert _materialize(instance).success
    result = _defs().resolve_job_def("daily_models_job").execute_in_process(
        instance=instance, partition_key="2026-11-20", raise_on_error=False)
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    error = checks[("staging/stg_interactions", "expectations_error")]
    assert not error.passed and error.metadata["failing_rows"].value == 1
    assert "latency_ms" in error.metadata["failures"].value and "slow" in error.metadata["failures"].value
    assert checks[("staging/stg_interactions", "expectations_warn")].passed
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert "staging/stg_interactions" in materialized
    assert "intermediate/int_interactions" not in materialized  # blocked by the failing ERROR check


def test_an_ingest_run_accepts_absolute_paths_outside_the_landing_folder(home, instance, tmp_path):
    outside = write_lines(tmp_path / "elsewhere" / "x.jsonl", [interaction("x1")])
    result = _materialize(instance, {"ops": {"raw_events": {"config": {"paths": [str(outside)]}}}})
    assert result.success
    with warehouse.session(home.warehouse, read_only=True) as con:
        assert con.execute("SELECT request_id FROM raw.interactions").fetchall() == [("x1",)]
