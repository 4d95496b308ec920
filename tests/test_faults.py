"""Crashes and concurrent writers: no row lost, none duplicated, no obscure failure."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel import warehouse
from flywheel.settings import Home
from flywheel.simulate import simulate


def _ingest_command(home: Path, *paths: Path, batch_lines: int = 2_000) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "ingest", *map(str, paths), "--home", str(home),
            "--batch-lines", str(batch_lines)]


def _totals(home: Path) -> tuple[int, int, int, int, int]:
    with warehouse.session(Home(home), read_only=True) as con:
        return con.execute("""
            SELECT (SELECT count(*) FROM raw.interactions), (SELECT count(DISTINCT request_id) FROM raw.interactions),
                   (SELECT count(*) FROM raw.feedback), (SELECT count(DISTINCT feedback_id) FROM raw.feedback),
                   (SELECT count(*) FROM raw.quarantine)
        """).fetchall()[0]


@pytest.mark.slow
def test_kill_9_at_random_points_then_rerun_loses_and_duplicates_nothing(tmp_path):
    source = tmp_path / "traffic.jsonl"
    counts = simulate(source, 120_000, seed=11, malformed_rate=0.01)
    home = tmp_path / "home"
    rng = random.Random(5)
    kills = 0
    for _ in range(6):
        process = subprocess.Popen(_ingest_command(home, source, batch_lines=500), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.3, 2.0))  # start-up takes about a second; the whole file about five more
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 3, "the file was ingested too fast to be interrupted; make it bigger"
    finished = subprocess.run(_ingest_command(home, source), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    interactions, distinct_i, feedback, distinct_f, quarantined = _totals(home)
    assert interactions == distinct_i == counts["interactions"]
    assert feedback == distinct_f == counts["feedback"]
    assert quarantined == counts["malformed"]
    with warehouse.session(Home(home), read_only=True) as con:
        ledger = con.execute("""SELECT status, lines_done, lines_ingested + lines_quarantined + lines_duplicate
                                       + lines_blank FROM raw.ingest_ledger""").fetchall()
    lines = sum(1 for _ in source.open("rb"))
    assert ledger == [("done", lines, lines)]
    # A file this large (over 64 MiB) is stored as Parquet segments: none of those the kills left half-done remains.
    with warehouse.session(Home(home), read_only=True) as con:
        registered = {path for (path,) in con.execute("SELECT path FROM raw.segments").fetchall()}
    on_disk = {file.relative_to(home / "warehouse.raw").as_posix()
               for file in (home / "warehouse.raw").rglob("*.parquet")}
    assert registered and on_disk == registered


def test_two_writers_at_once_wait_for_each_other_instead_of_failing(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a = simulate(first, 15_000, seed=1, malformed_rate=0)
    b = simulate(second, 15_000, seed=2, malformed_rate=0)
    home = tmp_path / "home"
    # Both processes also offer the other's file: whoever comes second finds it in the ledger.
    processes = [subprocess.Popen(_ingest_command(home, first, second, batch_lines=5_000), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True),
                 subprocess.Popen(_ingest_command(home, second, first, batch_lines=5_000), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert any("in use by another process; waiting" in err for _, err in outputs)
    interactions, distinct_i, feedback, distinct_f, _ = _totals(home)
    assert interactions == distinct_i == a["interactions"] + b["interactions"]
    assert feedback == distinct_f == a["feedback"] + b["feedback"]


def test_a_writer_that_waits_too_long_gets_a_clear_error(tmp_path):
    path = Home(tmp_path).warehouse
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(path)!r}); "
                                                     "print('locked', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(warehouse.WarehouseBusyError, match="stayed locked by another process"):
            warehouse.connect(Home(tmp_path), lock_timeout_s=1.0)
    finally:
        holder.kill()
        holder.wait()


def _build_in_child(root: str, everything: bool) -> None:
    from pipelines.launch import build

    result = build(Home(Path(root)), everything=everything)
    os._exit(0 if result.success else 1)


def _built_tables(home_root: Path) -> dict[str, list]:
    with warehouse.session(Home(home_root), read_only=True) as con:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
                for table in ("staging.stg_interactions", "staging.stg_feedback", "dedup.clusters",
                              "intermediate.int_interactions", "intermediate.int_cluster_members")}


@pytest.mark.slow
def test_a_build_killed_at_random_points_never_blocks_the_next_which_gives_a_clean_builds_tables(tmp_path):
    import multiprocessing

    from flywheel.ingest import ingest_file

    source = tmp_path / "traffic.jsonl"
    simulate(source, 4_000, days=6, seed=3)
    homes = {name: tmp_path / name for name in ("clean", "killed")}
    for root in homes.values():
        with warehouse.session(Home(root)) as con:
            ingest_file(con, source)
    # Children come from a fork server that imported everything once (forking this process, which runs other
    # tests' threads, could copy a held lock), so they start building at once and the kills land inside the
    # build: planning, staging, clustering, the views, or Dagster's bookkeeping in between.
    fork = multiprocessing.get_context("forkserver")
    fork.set_forkserver_preload(["great_expectations", "pipelines.definitions", "tests.test_faults"])
    started = time.monotonic()
    clean = fork.Process(target=_build_in_child, args=(str(homes["clean"]), False))
    clean.start()
    clean.join(300)
    full_build_s = time.monotonic() - started
    assert clean.exitcode == 0
    rng = random.Random(14)
    for _ in range(6):
        child = fork.Process(target=_build_in_child, args=(str(homes["killed"]), True))
        child.start()
        child.join(rng.uniform(0.2, full_build_s))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join()
    last = fork.Process(target=_build_in_child, args=(str(homes["killed"]), False))
    last.start()
    last.join(300)  # a killed run holding the warehouse's slot would make this wait forever
    assert last.exitcode == 0
    assert _built_tables(homes["killed"]) == _built_tables(homes["clean"])
