"""Real Dagster materializations and sensor ticks against a real DuckDB file."""

from __future__ import annotations

import json
from datetime import date

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


def test_the_landing_sensor_skips_files_already_ingested_since_they_last_changed(home, instance):
    from pipelines.defs.ingest.jobs import landing_sensor

    path = write_lines(home.landing / "a.jsonl", [interaction("a")])
    assert _materialize(instance).success  # as `flywheel run` does, before the UI and its sensors start
    context = dg.build_sensor_context(instance=instance)
    assert isinstance(landing_sensor(context), dg.SkipReason)
    write_lines(path, [interaction("a"), interaction("b")])  # changed after it was ingested: offered again
    request = landing_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
    assert request.run_config["ops"]["raw_events"]["config"]["paths"] == ["a.jsonl"]


def test_a_sensor_run_ingests_the_files_it_names(home, instance):
    from pipelines.defs.ingest.jobs import landing_sensor

    write_lines(home.landing / "a.jsonl", [interaction("a1"), interaction("a2")])
    request = landing_sensor(dg.build_sensor_context(instance=instance))
    result = _materialize(instance, request.run_config)
    assert result.success
    with warehouse.session(home, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.interactions").fetchall() == [(2,)]


def _days_built(home) -> list[tuple[str, int]]:
    with warehouse.session(home, read_only=True) as con:
        return con.execute("SELECT event_date::VARCHAR, count(*) FROM staging.stg_interactions GROUP BY 1 ORDER BY 1"
                           ).fetchall()


def test_the_build_sensor_requests_one_run_for_exactly_the_days_that_need_building(home, instance):
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from pipelines.defs.build.jobs import build_sensor

    def sensor():
        return build_sensor(dg.build_sensor_context(instance=instance, definitions=_defs()))

    assert isinstance(sensor(), dg.SkipReason)  # no warehouse yet
    write_lines(home.landing / "a.jsonl", [interaction("a1", timestamp="2026-11-20T10:00:00Z"),
                                          interaction("a2", timestamp="2026-11-21T10:00:00Z")])
    assert _materialize(instance).success
    assert instance.get_dynamic_partitions("days") == ["2026-11-20", "2026-11-21"]  # registered by the ingest
    (request,) = sensor().run_requests
    days = (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG])
    assert days == ("2026-11-20", "2026-11-21")
    result = _defs().resolve_job_def("build_job").execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    assert _days_built(home) == [("2026-11-20", 1), ("2026-11-21", 1)]
    assert isinstance(sensor(), dg.SkipReason)  # Dagster's record says both days are built: nothing to redo

    write_lines(home.landing / "b.jsonl", [interaction("b1", timestamp="2026-11-21T12:00:00Z")])
    assert _materialize(instance).success
    (request,) = sensor().run_requests
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        "2026-11-21", "2026-11-21")


def test_days_of_any_date_are_built_however_they_were_ingested(home, instance):
    from datetime import UTC, datetime, timedelta

    from flywheel.ingest import ingest_file
    from pipelines.launch import build

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    # ingested by the library (as `flywheel ingest` does), not by a Dagster run
    with warehouse.session(home) as con:
        ingest_file(con, write_lines(home.root / "x.jsonl", [interaction("new", timestamp=f"{yesterday}T10:00:00Z")]))
    assert build(home, instance=instance).success
    with warehouse.session(home) as con:  # an older day arrives after a newer one was built
        ingest_file(con, write_lines(home.root / "y.jsonl", [interaction("old", timestamp="2019-03-04T10:00:00Z")]))
    result = build(home, instance=instance)
    assert result.success and (result.days_built, result.days_with_data, len(result.runs)) == (1, 2, 1)
    assert _days_built(home) == [("2019-03-04", 1), (yesterday, 1)]
    assert instance.get_dynamic_partitions("days") == ["2019-03-04", yesterday]  # kept in date order
    again = build(home, instance=instance)
    assert again.success and again.runs == []


def test_late_feedback_rebuilds_the_models_that_join_it_not_the_days(home, instance):
    from pipelines.launch import build
    from tests.factories import feedback

    write_lines(home.landing / "a.jsonl", [interaction("a1", timestamp="2026-11-20T10:00:00Z")])
    assert _materialize(instance).success
    assert build(home, instance=instance).success
    write_lines(home.landing / "b.jsonl", [feedback("a1", timestamp="2026-11-24T10:00:00Z", thumb="up")])
    assert _materialize(instance).success
    result = build(home, instance=instance)
    assert result.success and result.days_built == 0 and len(result.runs) == 1
    built = {m.asset_key.to_user_string() for m in result.runs[0].get_asset_materialization_events()}
    assert "intermediate/int_feedback_by_request" in built and "staging/stg_interactions" not in built
    with warehouse.session(home, read_only=True) as con:
        assert con.execute("SELECT feedback_score FROM intermediate.int_interactions").fetchall() == [(1.0,)]


def test_rebuilding_gives_identical_tables_in_any_order_of_days(home, instance):
    from pipelines.launch import build

    simulate(home.landing / "sim.jsonl", 1_500, days=5, seed=7)
    assert _materialize(instance).success
    assert build(home, instance=instance).success

    def snapshot():
        with warehouse.session(home, read_only=True) as con:
            return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
                    for table in ("staging.stg_interactions", "dedup.clusters", "intermediate.int_cluster_members",
                                  "intermediate.int_redaction_counts")}

    first = snapshot()
    days = instance.get_dynamic_partitions("days")
    for day in reversed(days):  # one day at a time, newest first
        assert build(home, only=[date.fromisoformat(day)], everything=True, instance=instance).success
    assert snapshot() == first
    assert build(home, everything=True, instance=instance).success  # every day in one run
    assert snapshot() == first


def test_a_run_left_by_a_killed_process_is_failed_and_frees_its_slot(home, instance):
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    from pipelines.launch import PROCESS_TAG, fail_abandoned_runs

    gone = DagsterRun(job_name="build_job", run_id="dead-run", status=DagsterRunStatus.STARTED,
                      tags={PROCESS_TAG: "999999999:1.000"})
    daemon = DagsterRun(job_name="build_job", run_id="daemon-run", status=DagsterRunStatus.STARTED)
    instance.add_run(gone)
    instance.add_run(daemon)
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("warehouse")
    assert storage.claim_concurrency_slot("warehouse", "dead-run", "step").is_claimed
    assert fail_abandoned_runs(instance) == ["dead-run"]
    assert instance.get_run_by_id("dead-run").status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id("daemon-run").status == DagsterRunStatus.STARTED  # not ours to judge
    assert storage.claim_concurrency_slot("warehouse", "next-run", "step").is_claimed


def test_an_odd_row_is_reported_by_the_warn_check_and_blocks_nothing(home, instance):
    odd = interaction("greeting-first", timestamp="2026-11-20T11:00:00Z",
                      messages=[{"role": "assistant", "content": "Hi! How can I help?"},
                                {"role": "user", "content": "?"}])
    write_lines(home.landing / "a.jsonl", [interaction("ok", timestamp="2026-11-20T10:00:00Z"), odd])
    assert _materialize(instance).success
    result = _defs().resolve_job_def("build_job").execute_in_process(
        instance=instance, partition_key="2026-11-20", raise_on_error=False)
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    warn = checks[("staging/stg_interactions", "expectations_warn")]
    assert not warn.passed and "message_order_valid" in warn.metadata["failures"].value
    assert "greeting-first" in warn.metadata["failures"].value
    assert checks[("staging/stg_interactions", "expectations_error")].passed
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert {"staging/stg_interactions", "intermediate/int_interactions"} <= materialized


def test_an_ingest_run_accepts_absolute_paths_outside_the_landing_folder(home, instance, tmp_path):
    outside = write_lines(tmp_path / "elsewhere" / "x.jsonl", [interaction("x1")])
    result = _materialize(instance, {"ops": {"raw_events": {"config": {"paths": [str(outside)]}}}})
    assert result.success
    with warehouse.session(home, read_only=True) as con:
        assert con.execute("SELECT request_id FROM raw.interactions").fetchall() == [("x1",)]


def test_pulling_labels_before_anything_was_pushed_starts_no_argilla(home, instance, monkeypatch):
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    write_lines(home.landing / "a.jsonl", [interaction("a1")])
    assert _materialize(instance).success
    result = _defs().resolve_job_def("pull_labels_job").execute_in_process(instance=instance)
    (labels,) = result.asset_materializations_for_node("labeling__labels")
    assert labels.metadata["skipped"].value == "nothing pushed to Argilla yet"
    assert not home.argilla_folder.exists()  # the schedule's pull every 10 minutes does not start a server
