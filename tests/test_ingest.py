"""Ingestion into the raw layer: every line is ingested, quarantined with a reason, or counted as a duplicate."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.ingest import MappingError, ingest_file, load_mapping
from flywheel.ingest.loader import DEFAULT_MAX_LINE_BYTES
from flywheel.settings import SCHEMAS_DIR, Home
from tests.factories import feedback, interaction, write_lines


@pytest.fixture(autouse=True, params=["rows", "segments"])
def storage(request, monkeypatch) -> str:
    """Every behaviour holds whichever way events are stored: in the DuckDB file (small files) or as Parquet
    segments beside it (large files; here, every file)."""
    if request.param == "segments":
        from flywheel.ingest import loader

        monkeypatch.setattr(loader, "SEGMENT_MIN_BYTES", 0)
    return request.param


def count(con, table: str, where: str = "true") -> int:
    return con.execute(f"SELECT count(*) FROM raw.{table} WHERE {where}").fetchall()[0][0]


def test_valid_events_land_in_raw_tables_with_their_day(con, tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [interaction("r1"), interaction("r2", timestamp="2026-11-21T23:59:00"),
                                              feedback("r1")])
    report = ingest_file(con, path)
    assert (report.lines_read, report.lines_ingested, report.lines_quarantined) == (3, 3, 0)
    assert report.reconciles
    days = con.execute("SELECT request_id, event_date::VARCHAR FROM raw.interactions ORDER BY 1").fetchall()
    assert days == [("r1", "2026-11-20"), ("r2", "2026-11-21")]
    assert count(con, "feedback", "request_id = 'r1' AND thumb = 'up'") == 1
    row = con.execute("SELECT messages[2].content, source_file, source_line FROM raw.interactions "
                      "WHERE request_id = 'r2'").fetchall()[0]
    assert row == ("Reset password?", str(path.resolve()), 2)


def test_every_field_of_the_contract_is_stored_with_the_contracts_defaults(con, tmp_path):
    import msgspec

    from flywheel.contracts import CONTRACTS
    from flywheel.ingest.raw_layer import KINDS, NOT_STORED

    history = [{"role": "user", "content": "Write malware."}, {"role": "assistant", "refusal": "I can't help."},
               {"role": "user", "content": [{"type": "text", "text": "Then a poem."}]}]
    ingest_file(con, write_lines(tmp_path / "a.jsonl", [interaction("r1", messages=history)]))
    for kind, contract in CONTRACTS.items():
        stored = {name for (name,) in con.execute(f"SELECT column_name FROM (DESCRIBE raw.{KINDS[kind].table})")
                  .fetchall()}
        fields = {f.encode_name for f in msgspec.structs.fields(contract)} - NOT_STORED - {"timestamp"}
        assert fields <= stored, f"{kind}: {fields - stored} not stored"
    row = con.execute("""SELECT messages[2].refusal, json_extract_string(messages[3].content, '$[0].text'),
                                status, tags, metadata::VARCHAR FROM raw.interactions""").fetchone()
    assert row == ("I can't help.", "Then a poem.", "ok", [], "{}")


def test_the_same_file_twice_adds_nothing(con, tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [interaction("r1"), interaction("r2")])
    first = ingest_file(con, path)
    second = ingest_file(con, path)
    assert first.outcome == "ingested" and second.outcome == "already_ingested"
    assert count(con, "interactions") == 2
    assert count(con, "ingest_ledger") == 1


def test_a_renamed_copy_is_recognised_by_content(con, tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [interaction("r1"), feedback("r1")])
    ingest_file(con, path)
    copy = tmp_path / "elsewhere" / "renamed.jsonl"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    report = ingest_file(con, copy)
    assert report.outcome == "copy_of_ingested"
    assert count(con, "interactions") == 1 and count(con, "feedback") == 1
    assert count(con, "ingest_files", "outcome = 'copy_of_ingested'") == 1


def test_overlapping_exports_count_repeated_request_ids_as_duplicates(con, tmp_path):
    ingest_file(con, write_lines(tmp_path / "day1.jsonl", [interaction("r1"), interaction("r2")]))
    report = ingest_file(con, write_lines(tmp_path / "day1-again.jsonl",
                                          [interaction("r2"), interaction("r3"), interaction("r3")]))
    assert (report.lines_ingested, report.lines_duplicate) == (1, 2)
    assert report.reconciles
    assert count(con, "interactions") == 3


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"kind": "interaction", "request_id": ', "invalid JSON"),
        (b"[1, 2, 3]", "Expected `object`, got `array`"),
        (orjson.dumps(interaction(latency_ms="fast")), "Expected `float | null`, got `str` - at `$.latency_ms`"),
        (orjson.dumps(interaction(tokens_in=-3)), "Expected `int` >= 0 - at `$.tokens_in`"),
        (orjson.dumps({k: v for k, v in interaction().items() if k != "model"}), "missing required field `model`"),
        (orjson.dumps(interaction(messages=[{"role": "robot", "content": "hi"}])),
         "Invalid enum value 'robot' - at `$.messages[0].role`"),
        (orjson.dumps(interaction(messages=[])), "Expected `array` of length >= 1 - at `$.messages`"),
        (orjson.dumps(interaction(surprise=1)), "unknown field `surprise`"),
        (orjson.dumps({k: v for k, v in interaction().items() if k != "kind"}), "missing required field `kind`"),
        (orjson.dumps(interaction(response=None)), "status 'ok' needs a response"),
        (orjson.dumps(feedback(thumb=None)), "feedback_type 'thumbs' needs field 'thumb'"),
        (orjson.dumps(interaction()).replace(b"support-bot", b"support-\xff\xfebot"), "not valid UTF-8 at byte"),
    ],
)
def test_bad_lines_are_quarantined_with_file_line_and_reason(con, tmp_path, line, reason):
    path = write_lines(tmp_path / "mixed.jsonl", [interaction("good-1"), line, interaction("good-2")])
    report = ingest_file(con, path)
    assert (report.lines_ingested, report.lines_quarantined) == (2, 1)
    assert report.reconciles
    rows = con.execute("SELECT source_file, line_no, reason, raw_text, raw_bytes FROM raw.quarantine").fetchall()
    assert len(rows) == 1
    source_file, line_no, stored_reason, raw_text, raw_bytes = rows[0]
    assert (source_file, line_no) == (str(path.resolve()), 2)
    assert reason in stored_reason
    assert (raw_bytes or raw_text.encode()) == line  # nothing lost: the exact line is kept
    assert report.quarantine_examples[0].startswith(f"{path.resolve()}:2: ")


def test_oversized_lines_are_quarantined_whole(con, tmp_path):
    huge = orjson.dumps(interaction(metadata={"blob": "x" * (DEFAULT_MAX_LINE_BYTES + 10)}))
    report = ingest_file(con, write_lines(tmp_path / "big.jsonl", [huge, interaction("ok")]))
    assert (report.lines_ingested, report.lines_quarantined) == (1, 1)
    reason, size = con.execute("SELECT reason, length(raw_text) FROM raw.quarantine").fetchall()[0]
    assert "over the limit" in reason and size == len(huge)


def test_blank_lines_are_counted_not_quarantined(con, tmp_path):
    report = ingest_file(con, write_lines(tmp_path / "b.jsonl", [interaction("r1"), b"", b"   ", interaction("r2")]))
    assert (report.lines_read, report.lines_ingested, report.lines_blank, report.lines_quarantined) == (4, 2, 2, 0)
    assert report.reconciles


def test_feedback_may_arrive_before_its_interaction(con, tmp_path):
    ingest_file(con, write_lines(tmp_path / "1-feedback.jsonl", [feedback("late", thumb="down")]))
    assert count(con, "interactions") == 0 and count(con, "feedback") == 1
    ingest_file(con, write_lines(tmp_path / "2-interactions.jsonl", [interaction("late")]))
    joined = con.execute("""SELECT f.thumb FROM raw.feedback f JOIN raw.interactions i USING (request_id)""").fetchall()
    assert joined == [("down",)]


def test_feedback_without_an_id_gets_a_stable_one(con, tmp_path):
    ingest_file(con, write_lines(tmp_path / "f1.jsonl", [feedback("r1")]))
    later = feedback("r1", timestamp="2026-11-20T11:00:00Z")
    ingest_file(con, write_lines(tmp_path / "f2.jsonl", [feedback("r1"), later]))
    assert count(con, "feedback") == 2


def test_gzip_and_parquet_inputs(con, tmp_path):
    gz = tmp_path / "a.jsonl.gz"
    with gzip.open(gz, "wb") as handle:
        handle.write(orjson.dumps(interaction("gz-1")) + b"\n" + orjson.dumps(feedback("gz-1")) + b"\n")
    events = [interaction("pq-1"), interaction("pq-2", tags=["x"]), interaction("pq-bad", latency_ms=-1.0)]
    # Columnar exports usually hold nested parts as JSON text.
    rows = [{**e, "messages": orjson.dumps(e["messages"]).decode(), "response": orjson.dumps(e["response"]).decode()}
            for e in events]
    parquet = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    assert ingest_file(con, gz).lines_ingested == 2
    report = ingest_file(con, parquet)
    assert (report.format, report.lines_ingested, report.lines_quarantined) == ("native", 2, 1)
    assert con.execute("SELECT line_no FROM raw.quarantine").fetchall() == [(3,)]
    assert count(con, "interactions", "request_id LIKE 'pq-%'") == 2


def test_openai_request_response_pairs(con, tmp_path):
    pair = {
        "app_id": "checkout",
        "latency_ms": 733,
        "request": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.3,
                    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]},
        "response": {"id": "chatcmpl-123", "object": "chat.completion", "created": 1763600000,
                     "model": "gpt-4o-2024-08-06",
                     "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                         "role": "assistant", "content": None,
                         "tool_calls": [{"id": "call_1", "type": "function",
                                         "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]}}],
                     "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}},
    }
    failed = {"request": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
              "response": None, "error": "RateLimitError: 429", "timestamp": "2026-11-20T00:00:00Z"}
    report = ingest_file(con, write_lines(tmp_path / "proxy.jsonl", [pair, failed]))
    assert report.format == "openai" and report.lines_ingested == 2
    row = con.execute("""SELECT request_id, model, tokens_in, tokens_out, params->>'$.temperature',
                                response.tool_calls->>'$[0].function.name', app_id, status
                         FROM raw.interactions ORDER BY status DESC""").fetchall()
    assert row[1][1:] == ("gpt-4o", None, None, None, None, "default", "error")
    assert row[0] == ("chatcmpl-123", "gpt-4o-2024-08-06", 30, 9, "0.3", "lookup", "checkout", "ok")
    # the failed call has no id of its own: a content hash keeps it idempotent
    assert ingest_file(con, write_lines(tmp_path / "again.jsonl", [failed])).lines_duplicate == 1


def test_a_mapping_beside_files_in_a_landing_folder_applies_to_them(con, tmp_path):
    folder = tmp_path / "landing" / "vendor"
    (folder).mkdir(parents=True)
    (folder / "_mapping.yaml").write_text("""
name: vendor
events:
  - kind: interaction
    fields:
      request_id: id
      timestamp: created
      app_id: {const: vendor-app}
      model: {path: engine, default: unknown-model}
      messages: "[{role: 'user', content: question}]"
      response: "{content: answer}"
  - kind: feedback
    when: "stars != null"
    fields:
      request_id: id
      timestamp: created
      feedback_type: {const: rating}
      source: {const: user}
      rating: stars
      rating_scale: {const: 5}
""")
    path = write_lines(folder / "export.jsonl", [
        {"id": "v1", "created": "2026-11-20T01:00:00Z", "question": "2+2?", "answer": "4", "stars": 5},
        {"id": "v2", "created": "2026-11-20T02:00:00Z", "question": "3+3?", "answer": "6", "engine": "gpt-4o"},
        {"id": "v3", "created": "2026-11-20T03:00:00Z", "question": "1+1?", "answer": "2", "stars": 9},
    ])
    report = ingest_file(con, path)
    assert report.format == "mapping:vendor"
    # v3's interaction is kept; only its feedback (a rating off its scale) is quarantined, and named
    assert (report.lines_ingested, report.lines_quarantined, report.quarantine_rows) == (3, 0, 1)
    reason = con.execute("SELECT reason FROM raw.quarantine").fetchall()[0][0]
    assert reason.startswith("feedback event (events[1] of mapping vendor)")
    assert "rating 9.0 is outside 0..5.0" in reason
    assert con.execute("SELECT model FROM raw.interactions ORDER BY request_id").fetchall() == [
        ("unknown-model",), ("gpt-4o",), ("unknown-model",)]
    assert count(con, "feedback", "rating = 5") == 1


MAPPED = """name: demo
events:
  - kind: interaction
    fields: {request_id: id, timestamp: ts, app_id: {const: demo}, model: model,
             messages: "[{role: 'user', content: prompt}]", response: "{role: 'assistant', content: answer}"}
  - kind: feedback
    fields: {request_id: id, timestamp: ts, feedback_type: {const: rating}, source: {const: judge},
             rating: %s, rating_scale: {const: 5}}
"""


def _export(tmp_path: Path) -> Path:
    rows = [{"id": f"q{i}", "ts": "2026-11-20T10:00:00Z", "model": "m", "prompt": f"question {i}",
             "answer": f"answer {i}", "score": 4} for i in range(6)]
    return write_lines(tmp_path / "export.jsonl", rows)


def test_each_event_of_a_mapped_line_stands_on_its_own_and_a_failure_names_its_event(con, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(MAPPED % "answer")  # a rating from a text: every feedback event fails
    report = ingest_file(con, _export(tmp_path), mapping=load_mapping(broken))
    assert report.reconciles and (report.lines_ingested, report.lines_quarantined) == (6, 0)
    assert count(con, "interactions") == 6 and count(con, "feedback") == 0  # the interactions are kept
    reasons = {r for (r,) in con.execute("SELECT reason FROM raw.quarantine").fetchall()}
    assert reasons == {"feedback event (events[1] of mapping demo): contract: Expected `float | null`, "
                       "got `str` - at `$.rating`"}


def test_a_fixed_mapping_reads_the_file_again_once_and_resolves_what_it_quarantined(con, tmp_path):
    (tmp_path / "broken.yaml").write_text(MAPPED % "answer")
    (tmp_path / "fixed.yaml").write_text(MAPPED % "score")
    export = _export(tmp_path)
    ingest_file(con, export, mapping=load_mapping(tmp_path / "broken.yaml"))
    fixed = ingest_file(con, export, mapping=load_mapping(tmp_path / "fixed.yaml"))
    assert fixed.outcome == "ingested" and fixed.resolved == 6
    assert (count(con, "interactions"), count(con, "feedback")) == (6, 6)  # nothing twice
    assert con.execute("SELECT count(*) FILTER (WHERE resolved_at IS NULL) FROM raw.quarantine").fetchone() == (0,)
    again = ingest_file(con, export, mapping=load_mapping(tmp_path / "fixed.yaml"))
    assert again.outcome == "already_ingested"


def test_a_rating_without_its_scale_warns(tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text((MAPPED % "score").replace(", rating_scale: {const: 5}", ""))
    assert any("rating_scale" in w for w in load_mapping(mapping).warnings)
    mapping.write_text(MAPPED % "score")
    assert load_mapping(mapping).warnings == ()


def test_the_judge_preference_example_mapping_rates_winner_loser_and_ties(con, tmp_path):
    comparison = {"id": "c1", "ts": "2026-11-20T10:00:00Z", "prompt": "Hi", "a": {"model": "x", "answer": "Hello"},
                  "b": {"model": "y", "answer": "Hey"}, "judge": "llm-judge"}
    lines = [comparison | {"winner": "a"}, comparison | {"id": "c2", "winner": "b"},
             comparison | {"id": "c3", "winner": "tie"}]
    ingest_file(con, write_lines(tmp_path / "cmp.jsonl", lines),
                mapping=load_mapping(SCHEMAS_DIR / "mappings" / "judge_preference.yaml"))
    ratings = dict(con.execute("SELECT request_id, rating / rating_scale FROM raw.feedback").fetchall())
    assert ratings == {"c1-a": 1, "c1-b": 0, "c2-a": 0, "c2-b": 1, "c3-a": 0.5, "c3-b": 0.5}


def test_a_broken_mapping_names_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  - kind: interaction\n    fields:\n      modle: model\n")
    with pytest.raises(MappingError, match=r"bad.yaml: events\[0\].fields.modle: not a field"):
        load_mapping(bad)
    bad.write_text("events:\n  - kind: interaction\n    fields:\n      model: 'foo[?'\n")
    with pytest.raises(MappingError, match="invalid JMESPath expression"):
        load_mapping(bad)


def test_the_shared_zeroeval_sample_comes_in_through_its_mapping(con, zeroeval_path):
    mapping = load_mapping(SCHEMAS_DIR / "mappings" / "zeroeval.yaml")
    report = ingest_file(con, zeroeval_path, mapping=mapping)
    assert (report.lines_read, report.lines_ingested, report.lines_quarantined) == (14_509, 14_509, 0)
    assert count(con, "interactions") == 14_509
    models = con.execute("SELECT count(DISTINCT model), count(DISTINCT metadata->>'$.prompt_id') "
                         "FROM raw.interactions").fetchall()[0]
    assert models == (11, 1_319)
    # The grader's verdicts become task_success feedback, one per answer, joined back by request_id.
    accuracy = dict(con.execute("""
        SELECT i.model, avg(f.success::INT) FROM raw.feedback f JOIN raw.interactions i USING (request_id)
        GROUP BY 1""").fetchall())
    assert count(con, "feedback", "feedback_type = 'task_success'") == 14_509
    expected: dict[str, list[bool]] = {}
    with gzip.open(zeroeval_path) as handle:
        for line in handle:
            record = orjson.loads(line)
            expected.setdefault(record["model"], []).append(record["outcome"]["correct"])
    assert accuracy == pytest.approx({m: sum(v) / len(v) for m, v in expected.items()})


def test_files_are_discovered_oldest_first_and_hidden_files_skipped(tmp_path):
    import os

    from flywheel.ingest import discover

    old = write_lines(tmp_path / "z-old.jsonl", [interaction()])
    new = write_lines(tmp_path / "a-new.jsonl.gz", [interaction()])
    os.utime(old, (1, 1))
    write_lines(tmp_path / ".half-written.jsonl.part", [interaction()])
    write_lines(tmp_path / "_mapping.yaml", [])
    assert discover([tmp_path]) == [old, new]
    with pytest.raises(FileNotFoundError, match=r"no-such\.jsonl"):
        discover([tmp_path / "no-such.jsonl"])


def test_paths_keep_being_ingested_after_an_error_in_another(con, tmp_path: Path):
    # A file whose every line is bad is still "ingested": its lines sit in quarantine.
    report = ingest_file(con, write_lines(tmp_path / "all-bad.jsonl", [b"{", b"}"]))
    assert (report.lines_quarantined, report.reconciles) == (2, True)


def test_a_damaged_container_stores_what_it_can_and_the_files_after_it_go_on(tmp_path):
    from tests.test_cli import run_cli

    folder = tmp_path / "landing"
    folder.mkdir()
    packed = gzip.compress(b"".join(orjson.dumps(interaction(f"gz-{i}")) + b"\n" for i in range(3000)))
    (folder / "a-truncated.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    (folder / "b-not.parquet").write_text("not parquet")
    write_lines(folder / "c-plain-named.jsonl.gz", [interaction("plain-1")])
    write_lines(folder / "d-fine.jsonl", [interaction("fine-1")])
    for i, name in enumerate(["a-truncated.jsonl.gz", "b-not.parquet", "c-plain-named.jsonl.gz", "d-fine.jsonl"]):
        os.utime(folder / name, (1_700_000_000 + i, 1_700_000_000 + i))  # offered in this order
    done = run_cli("ingest", str(folder), home=tmp_path / "home")
    assert "Traceback" not in done.stderr
    out = " ".join(done.stderr.split())
    assert "a-truncated.jsonl.gz: partial" in out and "the gzip stream cannot be read after line" in out
    assert "b-not.parquet: failed" in out and "not readable as Parquet" in out
    assert "c-plain-named.jsonl.gz: ingested 1 lines" in out and "d-fine.jsonl: ingested 1 lines" in out
    again = " ".join(run_cli("ingest", str(folder), home=tmp_path / "home").stderr.split())
    assert "a-truncated.jsonl.gz: partial, nothing new" in again  # damaged content is not read again
    from flywheel import warehouse

    with warehouse.session(Home(tmp_path / "home"), read_only=True) as con:
        kept = con.execute("SELECT count(*) FROM raw.interactions WHERE request_id LIKE 'gz-%'").fetchall()[0][0]
        ledger = dict(con.execute("SELECT status, count(*) FROM raw.ingest_ledger GROUP BY 1").fetchall())
    assert 0 < kept < 3000 and ledger == {"partial": 1, "failed": 1, "done": 2}


def test_a_file_that_fails_the_same_way_twice_is_failed_and_not_retried(con, tmp_path, monkeypatch):
    from flywheel.ingest import loader

    path = write_lines(tmp_path / "a.jsonl", [interaction("r1")])

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(loader, "prepare_block", broken)
    first = ingest_file(con, path)
    assert first.outcome == "failed" and "the next run tries once more" in first.error
    second = ingest_file(con, path)
    assert second.outcome == "failed" and second.error == "RuntimeError: the disk is on fire"
    monkeypatch.undo()
    third = ingest_file(con, path)
    assert (third.outcome, third.new_lines) == ("failed", 0) and "disk is on fire" in third.error
    assert con.execute("SELECT status FROM raw.ingest_ledger").fetchall() == [("failed",)]


def test_a_file_that_failed_once_for_a_passing_reason_is_resumed(con, tmp_path, monkeypatch):
    from flywheel.ingest import loader

    path = write_lines(tmp_path / "a.jsonl", [interaction("r1"), interaction("r2")])
    monkeypatch.setattr(loader, "prepare_block", lambda *a, **k: (_ for _ in ()).throw(OSError("no space left")))
    assert ingest_file(con, path).outcome == "failed"
    monkeypatch.undo()
    report = ingest_file(con, path)
    assert report.outcome == "resumed" and report.lines_ingested == 2


def test_parallel_blocks_keep_every_row_on_its_own_line(con, tmp_path):
    from flywheel.simulate import simulate

    path = tmp_path / "traffic.jsonl"
    simulate(path, 3_000, seed=9, malformed_rate=0.02)
    report = ingest_file(con, path, batch_lines=400, workers=2)
    assert report.reconciles and report.lines_quarantined > 0
    expected = {}
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("kind") == "interaction":
                expected[line_no] = (record.get("request_id"), record.get("model"), record.get("latency_ms"))
    stored = con.execute("SELECT source_line, request_id, model, latency_ms FROM raw.interactions").fetchall()
    assert len(stored) == report.events_ingested - count(con, "feedback")
    assert all(expected[line] == (rid, model, latency) for line, rid, model, latency in stored)
    quarantined = {line for (line,) in con.execute("SELECT line_no FROM raw.quarantine").fetchall()}
    assert quarantined.isdisjoint(line for line, *_ in stored)


@pytest.mark.parametrize("workers", [0, 2])
def test_crlf_endings_and_whitespace_around_objects_are_read_as_the_same_events(con, tmp_path, workers):
    lines = [orjson.dumps(interaction("crlf")) + b"\r", b"  \t" + orjson.dumps(interaction("indented")),
             orjson.dumps(feedback("crlf")) + b"   ", b"\r"]
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\n".join(lines))  # and no newline after the last line
    report = ingest_file(con, path, workers=workers)
    assert (report.lines_read, report.lines_ingested, report.lines_blank, report.lines_quarantined) == (4, 3, 1, 0)
    assert con.execute("SELECT request_id, source_line FROM raw.interactions ORDER BY 2").fetchall() == [
        ("crlf", 1), ("indented", 2)]
    assert con.execute("SELECT request_id, source_line FROM raw.feedback").fetchall() == [("crlf", 3)]


def test_timestamps_are_stored_in_utc_whatever_their_offset(con, tmp_path):
    ingest_file(con, write_lines(tmp_path / "tz.jsonl", [
        interaction("offset", timestamp="2026-11-20T23:30:00.123456-02:00"),
        interaction("naive", timestamp="2026-11-20T10:00:00"),
        feedback("offset", timestamp="2026-11-21T00:15:00+05:00"),
    ]))
    rows = con.execute("""SELECT request_id, strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f'), event_date
                          FROM raw.interactions ORDER BY 1""").fetchall()
    assert [(rid, ts, str(day)) for rid, ts, day in rows] == [
        ("naive", "2026-11-20 10:00:00.000000", "2026-11-20"),
        ("offset", "2026-11-21 01:30:00.123456", "2026-11-21")]  # the next day in UTC
    assert [str(day) for (day,) in con.execute("SELECT event_date FROM raw.feedback").fetchall()] == ["2026-11-20"]


def test_lines_larger_than_duckdbs_default_object_size_are_kept_whole(con, tmp_path):
    # DuckDB reads a JSON object of at most 16 MB unless told otherwise; nothing here may depend on that.
    big = orjson.dumps(interaction("big", metadata={"blob": "y" * (20 << 20)}))
    too_big = orjson.dumps(interaction("too-big", metadata={"blob": "z" * (40 << 20)}))
    report = ingest_file(con, write_lines(tmp_path / "huge.jsonl", [big, too_big]), max_line_bytes=32 << 20)
    assert (report.lines_ingested, report.lines_quarantined) == (1, 1)
    assert con.execute("SELECT request_id, length(metadata::VARCHAR) > 20 << 20 FROM raw.interactions").fetchall() == [
        ("big", True)]
    assert con.execute("SELECT length(raw_text) FROM raw.quarantine").fetchall() == [(len(too_big),)]


@pytest.mark.parametrize(("workers", "batch_lines"), [(0, 250_000), (2, 250_000), (2, 2)])
def test_a_key_repeated_within_an_object_is_quarantined_not_fatal(con, tmp_path, workers, batch_lines):
    # msgspec takes the last of repeated keys; DuckDB refuses the object. The line goes to quarantine (with the
    # JSON as written) and the rest of its block is stored.
    repeated = orjson.dumps(interaction("first"))[:-1] + b',"request_id":"second"}'
    repeated_message = orjson.dumps(interaction("msg"))
    repeated_message = repeated_message.replace(b'"role":"user"', b'"role":"user","role":"user"')
    path = write_lines(tmp_path / "repeated.jsonl", [interaction("ok-1"), repeated, feedback("ok-1"),
                                                      repeated_message, interaction("ok-2")])
    # With two-line blocks, the two bad lines sit in different blocks that are committed together.
    report = ingest_file(con, path, workers=workers, batch_lines=batch_lines)
    assert (report.lines_ingested, report.lines_quarantined, report.reconciles) == (3, 2, True)
    assert sorted(r for (r,) in con.execute("SELECT request_id FROM raw.interactions").fetchall()) == ["ok-1", "ok-2"]
    quarantined = con.execute("SELECT line_no, reason, raw_text FROM raw.quarantine ORDER BY 1").fetchall()
    assert [(line, "duplicate key" in reason) for line, reason, _ in quarantined] == [(2, True), (4, True)]
    assert quarantined[0][2].encode() == repeated
    again = ingest_file(con, path, workers=workers, batch_lines=batch_lines)
    assert again.outcome == "already_ingested" and count(con, "quarantine") == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_a_key_repeated_across_blocks_keeps_its_first_line_however_blocks_are_committed(con, tmp_path, workers):
    # Small blocks are committed several to a transaction, and with workers the last ones all together: the
    # first line of each key wins wherever the blocks fall.
    lines = [interaction(f"r{i % 7}", model=f"m{i}") for i in range(60)]
    lines += [feedback(f"r{i % 3}", feedback_id=f"f{i % 5}", comment=str(i)) for i in range(20)]
    report = ingest_file(con, write_lines(tmp_path / "repeats.jsonl", lines), batch_lines=9, workers=workers)
    assert (report.lines_read, report.lines_ingested, report.lines_duplicate, report.reconciles) == (80, 12, 68, True)
    assert con.execute("SELECT request_id, model, source_line FROM raw.interactions ORDER BY 3").fetchall() == [
        (f"r{i}", f"m{i}", i + 1) for i in range(7)]
    assert con.execute("SELECT feedback_id, comment, source_line FROM raw.feedback ORDER BY 3").fetchall() == [
        (f"f{i}", str(i), 61 + i) for i in range(5)]


@pytest.mark.parametrize("workers", [0, 2])
def test_ingestion_leaves_the_connections_settings_as_it_found_them(con, tmp_path, workers):
    con.execute("SET threads = 3")
    con.execute("SET max_vacuum_tasks = 7")
    ingest_file(con, write_lines(tmp_path / "a.jsonl", [interaction("a"), feedback("a")]), workers=workers)
    assert con.execute("SELECT current_setting('threads'), current_setting('max_vacuum_tasks')").fetchall() == [
        (3, 7)]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_workers_store_the_same_rows_as_one_process_for_plain_and_compressed_files(tmp_path, suffix):
    from flywheel import warehouse
    from flywheel.simulate import simulate

    plain = tmp_path / "traffic.jsonl"
    simulate(plain, 1_500, seed=4, malformed_rate=0.02)
    source = plain if suffix == ".jsonl" else tmp_path / "traffic.jsonl.gz"
    if source != plain:
        source.write_bytes(gzip.compress(plain.read_bytes()))
    stored = {}
    for workers in (0, 2):
        with warehouse.session(Home(tmp_path / f"w{workers}")) as con:
            report = ingest_file(con, source, batch_lines=97, workers=workers)
            assert report.reconciles and report.lines_read == plain.read_bytes().count(b"\n")
            stored[workers] = [con.execute(f"SELECT * EXCLUDE (ingested_at) FROM raw.{table} ORDER BY source_line")
                               .fetchall() for table in ("interactions", "feedback")]
            stored[workers].append(con.execute(
                "SELECT line_no, reason FROM raw.quarantine ORDER BY line_no").fetchall())
    assert stored[0] == stored[2] and stored[0][2]
