"""The command line as a user runs it: real processes, a real warehouse, a real Dagster instance."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.factories import interaction, write_lines
from tests.support.ports import free_port

FLYWHEEL = [sys.executable, "-m", "pipelines.cli"]


def run_cli(*args: str, home: Path, check: bool = True, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLYWHEEL_HOME": str(home), "COLUMNS": "160", **(env or {})}
    done = subprocess.run([*FLYWHEEL, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_help_lists_every_command(tmp_path):
    out = run_cli("--help", home=tmp_path).stdout
    for command in ("simulate", "ingest", "build", "run", "sql", "dagster", "schemas", "argilla", "label"):
        assert command in out
    assert "--mapping" in run_cli("ingest", "--help", home=tmp_path).stdout


def test_main_job_simulates_ingests_queues_labeling_and_a_rerun_duplicates_nothing(tmp_path, argilla_target):
    home = tmp_path / "home"
    remote = {"ARGILLA_API_URL": argilla_target.api_url, "ARGILLA_API_KEY": argilla_target.api_key,
              "ARGILLA_WORKSPACE": "main-job"}
    first = run_cli("run", "--rows", "3000", home=home, env=remote)
    assert "Dagster run(s) succeeded" in first.stderr
    assert "response_review 200 of 200 queued" in first.stderr and argilla_target.api_url in first.stderr
    assert "support-bot" in first.stderr
    totals = json.loads(run_cli("sql", "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM raw.interactions",
                                "-o", "json", home=home).stdout)[0]
    assert 2900 < totals["n"] == totals["d"] <= 3000
    queued = json.loads(run_cli("sql", "SELECT kind, count(*) AS n, count(pushed_at) AS pushed FROM labeling.queue "
                                       "GROUP BY 1 ORDER BY 1", "-o", "json", home=home).stdout)
    assert queued[1] == {"kind": "response_review", "n": 200, "pushed": 200}
    assert 0 < queued[0]["n"] == queued[0]["pushed"] <= 50
    run_cli("run", "--rows", "0", home=home, env=remote)  # nothing new landed: no new rows anywhere
    again = json.loads(run_cli("sql", "SELECT count(*) AS n FROM raw.interactions", "-o", "json", home=home).stdout)
    assert again[0]["n"] == totals["n"]
    built = json.loads(run_cli("sql", "SELECT count(*) AS n, count(DISTINCT request_id) AS d, "
                                      "count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced "
                                      "FROM intermediate.int_interactions", "-o", "json", home=home).stdout)[0]
    assert built == {"n": totals["n"], "d": totals["n"], "unpriced": 0}
    assert (home / "dagster" / "dagster.yaml").exists() and (home / "warehouse.duckdb").exists()
    assert not (home / "argilla").exists()  # a configured remote Argilla means no local server


def test_logs_ingested_by_the_cli_are_built_whatever_their_date_and_nothing_is_built_twice(tmp_path):
    home = tmp_path / "home"
    path = write_lines(tmp_path / "in.jsonl", [interaction("old", timestamp="2019-05-01T10:00:00Z"),
                                               interaction("new", timestamp="2026-11-30T10:00:00Z")])
    run_cli("ingest", str(path), home=home)
    done = run_cli("run", "--rows", "0", "--no-labeling", home=home)
    assert "Traceback" not in done.stderr and "built 2019-05-01..2026-11-30: ok" in done.stderr
    days = run_cli("sql", "SELECT event_date::VARCHAR AS d FROM intermediate.int_interactions ORDER BY 1", "-o",
                   "csv", home=home).stdout
    assert days.split() == ["d", "2019-05-01", "2026-11-30"]
    assert "nothing to build" in run_cli("build", home=home).stderr
    forced = run_cli("build", "--days", "2019-05-01", home=home).stderr
    assert "built 1 of 2 day(s) with data in 1 Dagster run(s)" in forced
    bad = run_cli("build", "--since", "yesterday", home=home, check=False)
    assert bad.returncode == 2 and "--since 'yesterday': not a date (YYYY-MM-DD)" in bad.stderr


def test_ingest_reports_bad_lines_with_file_line_and_reason(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [interaction("ok"), b'{"kind": "interaction"'])
    done = run_cli("ingest", str(path), home=tmp_path / "home")
    assert f"{path}:2: invalid JSON" in done.stderr.replace("\n", "")
    csv = run_cli("sql", "SELECT line_no, reason FROM raw.quarantine", "-o", "csv", home=tmp_path / "home").stdout
    assert csv.splitlines()[1].startswith("2,invalid JSON")


def test_errors_are_clear_and_exit_non_zero(tmp_path):
    missing = run_cli("ingest", str(tmp_path / "nope.jsonl"), home=tmp_path / "h", check=False)
    assert missing.returncode == 2 and "nope.jsonl: no such file or folder" in missing.stderr
    no_warehouse = run_cli("sql", "SELECT 1", home=tmp_path / "empty", check=False)
    assert no_warehouse.returncode == 2 and "no warehouse" in no_warehouse.stderr
    path = write_lines(tmp_path / "in.jsonl", [interaction("ok")])
    run_cli("ingest", str(path), home=tmp_path / "h")
    bad_sql = run_cli("sql", "SELECT * FROM raw.nope", home=tmp_path / "h", check=False)
    assert bad_sql.returncode == 2 and "Table with name nope does not exist" in bad_sql.stderr
    read_only = run_cli("sql", "DELETE FROM raw.ingest_ledger", home=tmp_path / "h", check=False)
    assert read_only.returncode == 2 and "only queries that read" in read_only.stderr


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


@pytest.mark.slow
def test_dagster_ui_serves_assets_sensors_and_schedules_on_localhost_and_runs_a_publish(tmp_path):
    from flywheel.settings import Home
    from flywheel.simulate import simulate
    from pipelines.launch import run_main_job

    home = Home(tmp_path / "home").ensure()
    simulate(home.landing / "sim.jsonl", 400, days=2, seed=2)
    assert run_main_job(home, labeling=False).success
    port = free_port()
    env = {**os.environ, "FLYWHEEL_HOME": str(home.root)}
    process = subprocess.Popen([*FLYWHEEL, "dagster", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, "flywheel dagster exited early"
                assert time.monotonic() < deadline, "the Dagster UI did not come up"
                time.sleep(1)
        data = {}
        while time.monotonic() < deadline:
            data = _graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { "
                                  "assetNodes { assetKey { path } } sensors { name } schedules { name } } } } }")
            if data.get("repositoriesOrError", {}).get("nodes"):
                break
            time.sleep(1)
        repository = data["repositoriesOrError"]["nodes"][0]
        assert {"/".join(n["assetKey"]["path"]) for n in repository["assetNodes"]} >= {"raw/interactions",
                                                                                     "raw/quarantine"}
        assert sorted(s["name"] for s in repository["sensors"]) == ["build_sensor", "landing_sensor",
                                                                    "publish_after_new_labels"]
        assert sorted(s["name"] for s in repository["schedules"]) == ["daily_ingest", "daily_labeling",
                                                                      "pull_labels", "weekly_publish"]
        launched = _graphql(port, """mutation { launchRun(executionParams: {selector: {
            repositoryLocationName: "flywheel", repositoryName: "__repository__", jobName: "publish_job"}}) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""")
        assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["launchRun"]["run"]["runId"]
        status = ""
        while time.monotonic() < deadline + 120 and status not in ("SUCCESS", "FAILURE", "CANCELED"):
            time.sleep(2)
            status = _graphql(port, f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}'
                              )["runOrError"]["status"]
        assert status == "SUCCESS"
        import psutil

        from flywheel.processes import alive

        listening = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert listening == {"127.0.0.1"}  # bound to loopback only
        # a service manager stops `flywheel dagster` alone: the UI and daemon it started stop with it
        servers = psutil.Process(process.pid).children(recursive=True)
        process.terminate()
        process.wait(timeout=60)
        assert not [p for p in psutil.wait_procs(servers, timeout=30)[1] if alive(p.pid)]
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of its process group
            os.killpg(process.pid, signal.SIGKILL)


def test_a_failed_step_in_the_main_job_is_reported_by_name_and_reason_not_a_traceback(tmp_path):
    dead = {"ARGILLA_API_URL": "http://127.0.0.1:9", "ARGILLA_API_KEY": "k", "FLYWHEEL_ARGILLA_TIMEOUT": "2"}
    done = run_cli("run", "--rows", "300", home=tmp_path / "home", env=dead, check=False)
    err = done.stderr.replace("\n", " ")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "labeling: FAILED - labeling__queue:" in err and "127.0.0.1:9" in err
    assert "a Dagster run failed" in err
