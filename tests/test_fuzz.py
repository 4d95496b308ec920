"""Fuzzing ingestion: valid lines mutated in structure, types, sizes, nesting and encoding, in plain, gzip-ed,
damaged and misnamed files. Whatever comes in, ingestion does not stop, every line is accounted for, and no
valid line is lost."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel.ingest import ingest_file
from flywheel.ingest.raw_layer import ensure_raw_layer
from tests.factories import feedback, interaction

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=8)


def _valid(i: int, kind: int) -> dict:
    return interaction(f"ok-{i}", timestamp=f"2026-11-{10 + i % 10}T10:00:00Z") if kind else feedback(f"ok-{i}")


@st.composite
def mutated_line(draw, i: int) -> bytes:
    """A line made from a valid event by one mutation (which may leave it valid)."""
    event = interaction(f"m-{i}") if draw(st.booleans()) else feedback(f"m-{i}")
    field = draw(st.sampled_from(sorted(event)))
    how = draw(st.sampled_from(["drop", "retype", "nest", "huge", "bytes", "cut", "duplicate", "long", "unicode"]))
    if how == "drop":
        event.pop(field)
    elif how == "retype":
        event[field] = draw(JSON_VALUES)
    elif how == "nest":
        depth = draw(st.integers(10, 3_000))
        return orjson.dumps(event)[:-1] + b', "metadata": ' + b"[" * depth + b"]" * depth + b"}"
    elif how == "huge":
        event[draw(st.sampled_from(["tokens_in", "tokens_out", "latency_ms", "cost_usd"]))] = draw(
            st.sampled_from([2**63, 2**64 - 1, 1e308, -1, float("inf")]))
        return json.dumps(event).encode()
    elif how == "bytes":
        raw = bytearray(orjson.dumps(event))
        for _ in range(draw(st.integers(1, 4))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw).replace(b"\n", b" ")
    elif how == "cut":
        raw = orjson.dumps(event)
        return raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "duplicate":
        return orjson.dumps(event)[:-1] + b', "request_id": "again"}'
    elif how == "long":
        event["messages"] = [{"role": "user", "content": "x" * draw(st.integers(1, 300_000))}]
    else:
        event[field if isinstance(event.get(field), str) else "app_id"] = draw(st.text(min_size=1))
    return json.dumps(event).encode()  # a retyped field may hold an integer beyond 64 bits, which orjson refuses


@st.composite
def traffic(draw) -> tuple[list[bytes], set[str]]:
    """Lines (valid, mutated, blank) and the request ids of the valid interactions among them."""
    lines, valid = [], set()
    for i in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["valid", "valid", "mutated", "blank"]))
        if kind == "valid":
            event = _valid(i, draw(st.integers(0, 3)))
            lines.append(orjson.dumps(event))
            if event["kind"] == "interaction":
                valid.add(event["request_id"])
        elif kind == "mutated":
            lines.append(draw(mutated_line(i)))
        else:
            lines.append(draw(st.sampled_from([b"", b"   ", b"\t"])))
    return lines, valid


def _ingest(tmp: Path, name: str, data: bytes):
    path = tmp / name
    path.write_bytes(data)
    con = duckdb.connect()
    ensure_raw_layer(con)
    report = ingest_file(con, path, batch_lines=7)
    stored = {r for (r,) in con.execute("SELECT request_id FROM raw.interactions").fetchall()}
    quarantined = con.execute("SELECT count(*) FROM raw.quarantine").fetchall()[0][0]
    con.close()
    return report, stored, quarantined


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])


@FUZZ
@given(traffic(), st.sampled_from(["plain", "crlf", "bom", "gzip", "plain-named-gz", "no-final-newline"]))
def test_whatever_the_lines_every_one_is_accounted_for_and_no_valid_line_is_lost(tmp_path_factory, lines, container):
    body, valid = lines
    newline = b"\r\n" if container == "crlf" else b"\n"
    data = newline.join(body) + (b"" if container == "no-final-newline" else newline)
    if container == "bom":
        data = b"\xef\xbb\xbf" + data
    name = "t.jsonl"
    if container in ("gzip", "plain-named-gz"):
        name = "t.jsonl.gz"
        data = gzip.compress(data) if container == "gzip" else data
    report, stored, quarantined = _ingest(tmp_path_factory.mktemp("fuzz"), name, data)
    assert report.outcome == "ingested", report.error
    assert report.reconciles and report.lines_quarantined == quarantined
    assert valid <= stored  # no valid line is lost
    # without a final newline, a blank last line is no line at all
    assert report.lines_read == len(body) - (container == "no-final-newline" and body[-1] == b"")


@FUZZ
@given(traffic(), st.sampled_from(["truncated-gzip", "corrupt-gzip", "not-parquet", "empty-gzip"]),
       st.floats(0.05, 0.95))
def test_a_damaged_container_keeps_what_it_could_read_and_says_why(tmp_path_factory, lines, damage, where):
    body, _ = lines
    data = b"\n".join(body) + b"\n"
    name = "t.jsonl.gz"
    if damage == "truncated-gzip":
        packed = gzip.compress(data)
        data = packed[: max(10, int(len(packed) * where))]
    elif damage == "corrupt-gzip":
        packed = bytearray(gzip.compress(data))
        packed[-6] ^= 0xFF  # the CRC
        data = bytes(packed)
    elif damage == "empty-gzip":
        data = b"\x1f\x8b"
    else:
        name = "t.parquet"
    report, stored, _ = _ingest(tmp_path_factory.mktemp("damaged"), name, data)
    assert report.outcome in ("partial", "failed") and report.error  # with the reason
    accounted = report.lines_ingested + report.lines_quarantined + report.lines_duplicate + report.lines_blank
    assert accounted == report.lines_read <= len(body)
    assert stored <= {_request_id(line) for line in body}  # nothing stored that the file did not hold


def _request_id(line: bytes) -> str | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    found = record.get("request_id") if isinstance(record, dict) else None
    return found if isinstance(found, str) else None
