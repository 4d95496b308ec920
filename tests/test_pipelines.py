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


def test_the_daily_schedule_runs_the_whole_flywheel(home, instance):
    from pipelines.defs.ingest.jobs import daily_flywheel_schedule

    assert daily_flywheel_schedule.cron_schedule == "0 3 * * *"
    assert daily_flywheel_schedule.job_name == "flywheel_job"
    write_lines(home.landing / "a.jsonl", [interaction("a1")])
    result = _defs().resolve_job_def("flywheel_job").execute_in_process(instance=instance)
    assert result.success
