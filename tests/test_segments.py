"""The raw layer's two stores behind one view: rows in the DuckDB file (small files) and immutable Parquet
segments beside it (large files). Readers see one table; a segment counts only once registered."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from flywheel import warehouse
from flywheel.ingest import ingest_file, raw_layer
from flywheel.ingest import loader as loader_module
from flywheel.settings import Home
from tests.factories import feedback, interaction, write_lines


def stored(con, table: str) -> list[str]:
    key = "request_id" if table == "interactions" else "feedback_id"
    return [row[0] for row in con.execute(f"SELECT {key} FROM raw.{table} ORDER BY 1").fetchall()]


def segments(con) -> list[tuple[str, str, int]]:
    return con.execute("SELECT table_name, path, row_count FROM raw.segments ORDER BY path").fetchall()


def test_a_large_file_becomes_registered_parquet_segments_beside_the_warehouse(con, home, tmp_path):
    big = write_lines(tmp_path / "big.jsonl", [interaction(f"b{i}") for i in range(7)] + [feedback("b1")])
    report = ingest_file(con, big, storage="segments", batch_lines=3)
    assert report.reconciles and report.events_ingested == 8

    folder = home.root / "warehouse.raw"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet"))
    assert files == [path for _, path, _ in segments(con)]
    assert [(table, rows) for table, _, rows in segments(con)] == [("feedback", 1), *[("interactions", n) for n in
                                                                                       (1, 2, 3, 1)]]
    assert con.execute("SELECT count(*) FROM raw.interactions_rows").fetchall() == [(0,)]
    assert stored(con, "interactions") == [f"b{i}" for i in range(7)]
    # The segments hold the raw tables' columns, types included: one schema for every reader.
    assert con.execute("SELECT column_name, column_type FROM (DESCRIBE raw.interactions)").fetchall() == \
        con.execute("SELECT column_name, column_type FROM (DESCRIBE raw.interactions_rows)").fetchall()
    assert con.execute("SELECT event_date::VARCHAR, source_line FROM raw.interactions WHERE request_id = 'b4'"
                       ).fetchall() == [("2026-11-20", 5)]


def test_rows_and_segments_are_one_table_and_keys_stay_unique_across_both(con, tmp_path):
    ingest_file(con, write_lines(tmp_path / "small.jsonl", [interaction("a"), interaction("b"), feedback("a")]))
    big = write_lines(tmp_path / "big.jsonl", [interaction("b"), interaction("c"), interaction("c", model="other"),
                                               feedback("a"), feedback("c")])
    report = ingest_file(con, big, storage="segments")
    assert (report.lines_ingested, report.lines_duplicate) == (2, 3)
    assert stored(con, "interactions") == ["a", "b", "c"]
    assert len(stored(con, "feedback")) == 2
    # The segment keeps only what was new: its first line of "c", rewritten without the repeats.
    assert con.execute("SELECT request_id, model, source_line FROM raw.interactions WHERE request_id = 'c'"
                       ).fetchall() == [("c", "gpt-4o-mini", 2)]
    assert [(table, rows) for table, _, rows in segments(con)] == [("feedback", 1), ("interactions", 1)]

    # And the other way round: a small file repeating what segments hold adds nothing.
    again = ingest_file(con, write_lines(tmp_path / "late.jsonl", [interaction("c"), interaction("d")]))
    assert (again.lines_ingested, again.lines_duplicate) == (1, 1)
    assert stored(con, "interactions") == ["a", "b", "c", "d"]


def test_a_segment_moved_into_place_but_never_committed_is_never_read_and_is_removed(con, home, tmp_path,
                                                                                       monkeypatch):
    big = write_lines(tmp_path / "big.jsonl", [interaction(f"r{i}") for i in range(4)])

    def fail(*args, **kwargs):
        raise RuntimeError("stopped between moving the segment and committing")

    monkeypatch.setattr(loader_module, "refresh_view", fail)
    failed = ingest_file(con, big, storage="segments", batch_lines=2)  # the file fails; ingestion goes on
    assert failed.outcome == "failed" and "RuntimeError: stopped" in failed.error
    left = list((home.root / "warehouse.raw").rglob("*.parquet"))
    assert left and segments(con) == [] and stored(con, "interactions") == []

    monkeypatch.undo()
    stray = left[0].with_name("unrelated.parquet")
    shutil.copy(left[0], stray)
    report = ingest_file(con, big, storage="segments", batch_lines=2)
    assert report.reconciles and stored(con, "interactions") == ["r0", "r1", "r2", "r3"]
    assert not stray.exists()
    assert len(list((home.root / "warehouse.raw").rglob("*.parquet"))) == len(segments(con)) == 3


def test_a_moved_warehouse_reads_its_segments_from_their_new_place(home, tmp_path):
    with warehouse.session(home) as con:
        ingest_file(con, write_lines(tmp_path / "big.jsonl", [interaction("x"), interaction("y")]), storage="segments")
    moved = tmp_path / "moved"
    shutil.move(home.root, moved)
    with warehouse.session(Home(moved)) as con:  # a writer re-points the views
        raw_layer.ensure_raw_layer(con)
    with warehouse.session(Home(moved), read_only=True) as con:
        assert stored(con, "interactions") == ["x", "y"]


def test_any_duckdb_client_reads_the_views_read_only(home, tmp_path):
    with warehouse.session(home) as con:
        ingest_file(con, write_lines(tmp_path / "big.jsonl", [interaction("x"), feedback("x")]), storage="segments")
        ingest_file(con, write_lines(tmp_path / "small.jsonl", [interaction("y")]))
    plain = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert plain.execute("SELECT request_id FROM raw.interactions ORDER BY 1").fetchall() == [("x",), ("y",)]
        assert plain.execute("SELECT count(*) FROM raw.feedback").fetchall() == [(1,)]
    finally:
        plain.close()


def test_a_warehouse_made_before_segments_keeps_its_events(home):
    with warehouse.session(home) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(raw_layer.RAW_DDL.replace("interactions_rows", "interactions").replace("feedback_rows", "feedback"))
        con.execute("""INSERT INTO raw.interactions (request_id, event_date, ts, app_id, model, messages, status,
                       tags, metadata, source_file, source_line, file_hash, ingested_at)
                       VALUES ('old', DATE '2026-01-01', now(), 'app', 'm', [], 'ok', [], '{}', 'f', 1, 'h', now())""")
    with warehouse.session(home) as con:
        raw_layer.ensure_raw_layer(con)
        assert stored(con, "interactions") == ["old"]
        assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'raw' "
                           "AND table_name = 'interactions'").fetchall() == [("VIEW",)]


def test_storage_must_be_one_of_the_named_ways(con, tmp_path):
    with pytest.raises(ValueError, match="storage must be"):
        ingest_file(con, write_lines(tmp_path / "a.jsonl", [interaction()]), storage="parquet")


def test_a_warehouse_made_by_an_older_flywheel_gains_the_contracts_new_columns(home, tmp_path):
    with warehouse.session(home) as con:
        con.execute("CREATE SCHEMA raw")
        # the interactions table as it was before messages kept their refusal, and before tags had a default
        ddl = raw_layer.RAW_DDL.replace(', "refusal" VARCHAR)[] NOT NULL', ")[] NOT NULL")
        assert ddl != raw_layer.RAW_DDL
        con.execute(ddl)
        history = [{"role": "user", "content": "Do something bad."}, {"role": "assistant", "refusal": "No."},
                   {"role": "user", "content": "Fine, a poem then."}]
        ingest_file(con, write_lines(tmp_path / "a.jsonl", [interaction("r1", messages=history)]))
        assert con.execute("SELECT messages[2].refusal FROM raw.interactions").fetchone() == ("No.",)
