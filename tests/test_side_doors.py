"""No side doors: the query tool only reads, and what holds secrets under FLYWHEEL_HOME is its owner's alone."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel import warehouse
from flywheel.ingest import ingest_file
from flywheel.settings import Home
from tests.factories import interaction, write_lines
from tests.test_cli import run_cli


@pytest.fixture
def ingested(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home").ensure()
    with warehouse.session(home) as con:
        ingest_file(con, write_lines(tmp_path / "a.jsonl", [interaction("r1"), interaction("r2")]))
    return home


WRITES = [
    "COPY (SELECT * FROM raw.interactions) TO '{out}/leak.csv'",
    "EXPORT DATABASE '{out}/export'",
    "ATTACH '{out}/new.duckdb' AS other (READ_ONLY false)",
    "CREATE TABLE other.t AS SELECT 1",
    "CHECKPOINT",
    "VACUUM",
    "SET threads = 1",
    "CREATE TEMP TABLE t AS SELECT 1",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA enable_profiling",
    "SELECT 1; COPY (SELECT 1) TO '{out}/second.csv'",
]


@pytest.mark.parametrize("statement", WRITES)
def test_the_query_tool_refuses_every_statement_that_could_write_before_running_it(ingested, tmp_path, statement):
    out = tmp_path / "out"
    out.mkdir()
    with warehouse.query_session(ingested) as con, pytest.raises(warehouse.RefusedStatement):
        warehouse.run_query(con, statement.format(out=out))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("query", ["SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM glob('/etc/*')",
                                   "SELECT * FROM read_csv('/etc/hostname')",
                                   "SELECT * FROM read_text('{home}/../outside.txt')"])
def test_files_outside_the_home_are_out_of_reach_unless_allowed(ingested, tmp_path, query):
    (tmp_path / "outside.txt").write_text("not yours")
    import duckdb

    with warehouse.query_session(ingested) as con, pytest.raises(duckdb.PermissionException):
        warehouse.run_query(con, query.format(home=ingested.root)).fetchall()
    with warehouse.query_session(ingested, allow_files=True) as con:
        assert warehouse.run_query(con, query.format(home=ingested.root)).fetchall() is not None


def test_reads_and_the_homes_own_files_still_work(ingested):
    with warehouse.query_session(ingested) as con:
        for query in ("SELECT count(*) FROM raw.interactions", "SHOW ALL TABLES", "DESCRIBE raw.interactions",
                      "SUMMARIZE raw.interactions", "EXPLAIN SELECT 1", "FROM raw.interactions LIMIT 1",
                      "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
                      f"SELECT count(*) FROM glob('{ingested.root}/*')"):
            warehouse.run_query(con, query).fetchall()
        with pytest.raises(__import__("duckdb").Error, match="locked"):
            con.execute("SET threads = 1")  # even past the check: the configuration is locked


def test_a_refused_statement_is_one_line_and_exit_2_and_other_errors_one_line_and_exit_1(ingested, tmp_path):
    refused = run_cli("sql", f"COPY (SELECT * FROM raw.interactions) TO '{tmp_path}/x.csv'", home=ingested.root,
                      check=False)
    assert refused.returncode == 2 and "only queries that read" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "x.csv").exists()
    outside = run_cli("sql", "SELECT * FROM read_text('/etc/passwd')", home=ingested.root, check=False)
    assert outside.returncode == 2 and "--allow-files" in outside.stderr
    lock = f"import duckdb, time; c = duckdb.connect({str(ingested.warehouse)!r}); print('locked', flush=True); "
    holder = subprocess.Popen([sys.executable, "-c", lock + "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = run_cli("build", home=ingested.root, check=False, env={"FLYWHEEL_LOCK_TIMEOUT": "1"})
        assert busy.returncode == 1 and "Traceback" not in busy.stderr
        assert "stayed locked by another process" in busy.stderr and "--debug" in busy.stderr
        debug = run_cli("--debug", "build", home=ingested.root, check=False, env={"FLYWHEEL_LOCK_TIMEOUT": "1"})
        assert debug.returncode == 1 and "Traceback" in debug.stderr
    finally:
        holder.kill()
        holder.wait()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_what_holds_raw_text_or_secrets_is_owner_only(tmp_path, monkeypatch):
    from flywheel.ingest import loader

    monkeypatch.setattr(loader, "SEGMENT_MIN_BYTES", 0)  # segments too
    home = Home(tmp_path / "home").ensure()
    with warehouse.session(home) as con:
        ingest_file(con, write_lines(tmp_path / "a.jsonl", [interaction("r1"), "not json"]))
    assert _mode(home.root) == _mode(home.landing) == _mode(home.dagster_home) == 0o700
    assert _mode(home.warehouse) == 0o600
    segments = home.warehouse.with_suffix(".raw")
    assert [_mode(p) for p in segments.rglob("*") if p.is_dir()] and all(
        _mode(p) == (0o700 if p.is_dir() else 0o600) for p in [segments, *segments.rglob("*")])


def test_the_local_argillas_data_and_credentials_are_owner_only(argilla_server):
    folder = argilla_server.folder
    assert _mode(folder) == _mode(argilla_server.data) == 0o700
    assert _mode(argilla_server.credentials_file) == 0o600
    database = argilla_server.data / "argilla.db"
    assert database.exists() and _mode(database) == 0o600
