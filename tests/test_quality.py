"""Great Expectations suites on real partitions: a clean batch passes, planted bad rows fail by name."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from flywheel.ingest import ingest_file
from flywheel.quality import check_relation
from flywheel.reference import write_model_prices
from flywheel.sqlmodels import load_models, materialize
from tests.factories import feedback, interaction, write_lines

DAY = date(2026, 11, 20)


def build(con, tmp_path, events, name="in.jsonl"):
    ingest_file(con, write_lines(tmp_path / name, events))
    write_model_prices(con)
    for model in load_models():
        if model.layer == "staging":  # what the suites check
            materialize(con, model, DAY if model.materialized == "incremental" else None)


def failed(outcome, severity):
    return {(o.expectation, o.column) for o in outcome.failures(severity)}


@pytest.fixture(scope="module")
def clean_day():
    return [interaction(f"r{i}", timestamp=f"2026-11-20T10:{i:02d}:00Z") for i in range(20)]


def test_a_clean_partition_passes_every_expectation(con, tmp_path, clean_day):
    build(con, tmp_path, [*clean_day, feedback("r1")])
    outcome = check_relation(con, "staging.stg_interactions", DAY)
    assert outcome.rows == 20 and outcome.passed
    assert failed(outcome, "warning") == set()
    assert all(o.error is None for o in outcome.outcomes)
    assert check_relation(con, "staging.stg_feedback").passed


def test_planted_odd_rows_are_reported_with_examples_and_block_nothing(con, tmp_path, clean_day):
    bad = [
        interaction("order", timestamp="2026-11-20T11:01:00Z",
                    messages=[{"role": "assistant", "content": "hi"}, {"role": "user", "content": "?"}]),
        interaction("tool", timestamp="2026-11-20T11:02:00Z",
                    messages=[{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c", "content": "y"}]),
        interaction("house", timestamp="2026-11-20T11:03:00Z", model="house-model-7"),
    ]
    build(con, tmp_path, [*clean_day, *bad])
    outcome = check_relation(con, "staging.stg_interactions", DAY)
    assert outcome.passed  # unusual, not invalid: what blocks the flywheel never comes from a logged line
    assert failed(outcome, "warning") == {("expect_column_values_to_be_in_set", "known_model"),
                                          ("expect_column_values_to_be_in_set", "message_order_valid")}
    order = next(o for o in outcome.outcomes if o.column == "message_order_valid")
    assert order.unexpected_count == 2
    assert {e["request_id"] for e in order.examples} == {"order", "tool"}


def test_implausible_lines_are_quarantined_at_ingestion_naming_the_bound(con, tmp_path):
    report = ingest_file(con, write_lines(tmp_path / "f.jsonl", [
        interaction("future", timestamp="2099-01-01T00:00:00Z"),
        interaction("epoch", timestamp="1970-01-01T00:00:00Z"),
        interaction("slow", latency_ms=9_000_000.0), interaction("huge", tokens_in=2**64 - 1),
        interaction("fine")]))
    assert (report.lines_ingested, report.lines_quarantined) == (1, 4)
    reasons = dict(con.execute("SELECT line_no, reason FROM raw.quarantine ORDER BY 1").fetchall())
    assert "future_skew_minutes" in reasons[1] and "timestamp_min" in reasons[2]
    assert "latency_ms_max" in reasons[3] and "tokens_in_max" in reasons[4]


def test_orphaned_feedback_warns_only_after_its_grace_period(con, tmp_path, clean_day):
    build(con, tmp_path, [*clean_day, feedback("ghost-old", timestamp="2020-01-01T00:00:00Z"),
                          feedback("ghost-new", timestamp=datetime.now(UTC).isoformat())])
    outcome = check_relation(con, "staging.stg_feedback")
    assert outcome.passed  # a warning, not an error
    orphans = next(o for o in outcome.outcomes if o.column == "orphan_past_grace")
    assert (orphans.success, orphans.unexpected_count) == (False, 1)


def test_a_frame_too_large_for_one_batch_is_validated_in_parts_with_the_same_verdicts(con, tmp_path, monkeypatch):
    """Parts split by the key's hash keep a duplicated key within one part; another unique column is counted
    over the whole frame, so nothing depends on where the parts fall."""
    import json

    from flywheel import quality

    suites = tmp_path / "expectations"
    suites.mkdir()
    (suites / "things.frame.sql").write_text("SELECT id, other, score FROM main.things")
    (suites / "things.json").write_text(json.dumps({"name": "things", "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "other"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "other"}, "severity": "warning"},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "score", "min_value": 0,
                                                                  "max_value": 1}},
    ]}))
    monkeypatch.setattr(quality, "SUITES_DIR", suites)
    # 200 rows: ids 0..197 plus two repeats, `other` repeats across ids (7 and 107 share a value), nulls, and
    # three scores out of range
    con.execute("""CREATE TABLE main.things AS
        SELECT i AS id, CASE WHEN i = 107 THEN 'o7' WHEN i % 50 = 3 THEN NULL ELSE 'o' || i END AS other,
               CASE WHEN i IN (5, 150, 190) THEN 2.0 ELSE 0.5 END AS score FROM range(198) t(i)
        UNION ALL SELECT 10, 'o10', 0.5 UNION ALL SELECT 120, 'x', 0.5""")
    whole = quality.check_relation(con, "main.things", chunk_rows=1_000)
    parts = quality.check_relation(con, "main.things", chunk_rows=30)
    verdicts = [(o.expectation, o.column, o.success, o.unexpected_count) for o in whole.outcomes]
    assert [(o.expectation, o.column, o.success, o.unexpected_count) for o in parts.outcomes] == verdicts
    assert verdicts == [("expect_column_values_to_be_unique", "id", False, 4),
                        ("expect_column_values_to_be_unique", "other", False, 4),  # o7 twice, o10 twice
                        ("expect_column_values_to_not_be_null", "other", False, 4),
                        ("expect_column_values_to_be_between", "score", False, 3)]
    assert parts.rows == whole.rows == 200
    assert {e["other"] for e in parts.outcomes[1].examples} == {"o7", "o10"}
