"""Exactly-once, resumable loading of input files into the raw layer.

A file is known by the hash of its content. Its lines are validated and written in batches; each batch
commits its rows, its quarantined lines and the ledger's progress in one DuckDB transaction, so a crash
at any point leaves either the whole batch or none of it, and the next run resumes after the last
committed line. Rows are keyed by `request_id` (interactions) and `feedback_id` (feedback): a renamed
copy, a re-run or an overlapping export adds nothing twice.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import msgspec
import orjson
import pyarrow as pa

from flywheel.contracts import EVENT_DECODER, Event, InteractionEvent, ValidationError, validate
from flywheel.ingest.formats import Adapter, adapter_for, looks_like_openai_pair
from flywheel.ingest.mapping import FieldMapping, load_mapping
from flywheel.ingest.sources import SourceLine, container_of, content_hash, read_lines
from flywheel.warehouse import ensure_raw_layer

DEFAULT_BATCH_LINES = 100_000
DEFAULT_MAX_LINE_BYTES = 1 << 20
MAPPING_FILE_NAME = "_mapping.yaml"


class LineError(ValueError):
    """Why one line cannot be ingested."""


@dataclass
class FileReport:
    path: str
    file_hash: str
    format: str
    outcome: str  # ingested | resumed | already_ingested | copy_of_ingested
    lines_read: int = 0
    lines_ingested: int = 0
    lines_quarantined: int = 0
    lines_duplicate: int = 0
    lines_blank: int = 0
    events_ingested: int = 0
    new_lines: int = 0  # lines this run read (0 when the file was already known)
    seconds: float = 0.0
    size_bytes: int = 0
    quarantine_examples: list[str] = field(default_factory=list)

    @property
    def reconciles(self) -> bool:
        accounted = self.lines_ingested + self.lines_quarantined + self.lines_duplicate + self.lines_blank
        return accounted == self.lines_read


Parsed = list[tuple[Event, bytes]]  # each event with the JSON it is stored from


def _decode_native(raw: bytes) -> Parsed:
    # The fast path: one pass of msgspec over the bytes validates the whole line; the line itself is stored.
    return [(EVENT_DECODER.decode(raw), raw)]


def parse_line(raw: bytes, adapter: Adapter | None, max_line_bytes: int) -> Parsed:
    """Validate one line against the contract (adapter None: native JSON); raise LineError naming the reason."""
    if len(raw) > max_line_bytes:
        raise LineError(f"line is {len(raw):,} bytes, over the limit of {max_line_bytes:,}")
    try:
        if adapter is None:
            return _decode_native(raw)
        record = orjson.loads(raw)
        if not isinstance(record, dict):
            raise LineError(f"expected a JSON object, got {type(record).__name__}")
        try:
            events = adapter(record)
        except (ValueError, TypeError, KeyError) as error:
            raise LineError(f"cannot map record: {error}") from error
        if not events:
            raise LineError("the mapping produced no event from this record")
        return [(validate(event), orjson.dumps(event)) for event in events]
    except UnicodeDecodeError as error:
        raise LineError(f"not valid UTF-8 at byte {error.start}") from error
    except ValidationError as error:
        raise LineError(f"contract: {error}") from error
    except (msgspec.DecodeError, orjson.JSONDecodeError) as error:
        raise LineError(f"invalid JSON: {error}") from error


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

BATCH_SCHEMA = pa.schema([
    ("line_no", pa.int64()), ("kind", pa.string()), ("payload", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")), ("key", pa.string()),
])
QUARANTINE_SCHEMA = pa.schema([
    ("source_file", pa.string()), ("file_hash", pa.string()), ("line_no", pa.int64()), ("reason", pa.string()),
    ("raw_text", pa.string()), ("raw_bytes", pa.binary()), ("quarantined_at", pa.timestamp("us", tz="UTC")),
])

# DuckDB turns the validated JSON into typed columns, in parallel and with no Python object per field.
_INTERACTION_SHAPE = orjson.dumps({
    "request_id": "VARCHAR", "app_id": "VARCHAR", "model": "VARCHAR", "provider": "VARCHAR",
    "messages": [{"role": "VARCHAR", "content": "VARCHAR", "name": "VARCHAR", "tool_call_id": "VARCHAR",
                  "tool_calls": "JSON"}],
    "response": {"role": "VARCHAR", "content": "VARCHAR", "tool_calls": "JSON", "refusal": "VARCHAR",
                 "finish_reason": "VARCHAR"},
    "tools": "JSON", "params": "JSON", "latency_ms": "DOUBLE", "tokens_in": "BIGINT", "tokens_out": "BIGINT",
    "cost_usd": "DOUBLE", "status": "VARCHAR", "error": "VARCHAR", "user_hash": "VARCHAR", "session_hash": "VARCHAR",
    "tags": ["VARCHAR"], "metadata": "JSON",
}).decode()
_FEEDBACK_SHAPE = orjson.dumps({
    "request_id": "VARCHAR", "feedback_type": "VARCHAR", "source": "VARCHAR", "thumb": "VARCHAR",
    "rating": "DOUBLE", "rating_scale": "DOUBLE", "correction": "VARCHAR", "success": "BOOLEAN",
    "comment": "VARCHAR", "user_hash": "VARCHAR", "metadata": "JSON",
}).decode()


class _Batch:
    """Validated lines and quarantined lines accumulated between two commits."""

    def __init__(self, source_file: str, file_hash: str) -> None:
        self.source_file, self.file_hash = source_file, file_hash
        self.now = datetime.now(UTC)
        self.line_nos: list[int] = []
        self.kinds: list[str] = []
        self.payloads = bytearray()  # all payloads back to back; Arrow takes them without a copy per line
        self.offsets = array("i", [0])  # int32 offsets: a batch stays far below 2 GiB
        self.ts: list[int] = []
        self.keys: list[str] = []  # request_id of an interaction, feedback_id of a feedback event
        self.quarantine: list[tuple] = []
        self.valid_lines = 0
        self.blank_lines = 0

    def add(self, line_no: int, parsed: Parsed) -> None:
        self.valid_lines += 1
        for event, payload in parsed:
            self.line_nos.append(line_no)
            self.payloads += payload
            self.offsets.append(len(self.payloads))
            self.ts.append((event.timestamp - _EPOCH) // _MICROSECOND)
            if isinstance(event, InteractionEvent):
                self.kinds.append("interaction")
                self.keys.append(event.request_id)
            else:
                self.kinds.append("feedback")
                self.keys.append(event.stable_id)

    def reject(self, line: SourceLine, reason: str) -> None:
        try:
            text, raw_bytes = line.raw.decode("utf-8"), None
        except UnicodeDecodeError:  # keep the exact bytes when text cannot hold them
            text, raw_bytes = line.raw.decode("utf-8", errors="replace"), line.raw
        self.quarantine.append((self.source_file, self.file_hash, line.line_no, reason, text, raw_bytes, self.now))

    def _events(self) -> pa.Table:
        return pa.Table.from_arrays([
            pa.array(self.line_nos, pa.int64()), pa.array(self.kinds, pa.string()),
            pa.Array.from_buffers(pa.string(), len(self.line_nos),
                                  [None, pa.py_buffer(self.offsets), pa.py_buffer(self.payloads)]),
            pa.array(self.ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(self.keys, pa.string()),
        ], schema=BATCH_SCHEMA)

    def _quarantined(self) -> pa.Table:
        columns = list(zip(*self.quarantine, strict=True)) if self.quarantine else [[] for _ in QUARANTINE_SCHEMA]
        return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, QUARANTINE_SCHEMA, strict=True)],
                                    schema=QUARANTINE_SCHEMA)

    def commit(self, con: duckdb.DuckDBPyConnection, lines_done: int, finished: bool) -> tuple[int, int]:
        """Write the batch and the ledger's progress atomically; return (lines ingested, events ingested)."""
        con.register("batch_events", self._events())
        con.register("batch_quarantine", self._quarantined())
        source = [self.source_file, self.file_hash, self.now]
        con.execute("BEGIN TRANSACTION")
        try:
            # Which events are new: keyed on the ids alone, so the wide rows are parsed and written once.
            con.execute("""
                CREATE OR REPLACE TEMP TABLE batch_fresh AS
                SELECT min(b.line_no) AS line_no, b.kind FROM batch_events b
                WHERE NOT EXISTS (SELECT 1 FROM raw.interactions r
                                  WHERE b.kind = 'interaction' AND r.request_id = b.key)
                  AND NOT EXISTS (SELECT 1 FROM raw.feedback r WHERE b.kind = 'feedback' AND r.feedback_id = b.key)
                GROUP BY b.kind, b.key
            """)
            con.execute(f"""
                INSERT INTO raw.interactions
                SELECT j.request_id, (b.ts AT TIME ZONE 'UTC')::DATE, b.ts, j.app_id, j.model, j.provider,
                       j.messages, j.response, j.tools, j.params, j.latency_ms, j.tokens_in, j.tokens_out,
                       j.cost_usd, coalesce(j.status, 'ok'), j.error, j.user_hash, j.session_hash,
                       coalesce(j.tags, []), coalesce(j.metadata, '{{}}'), $1, b.line_no, $2, $3
                FROM (SELECT *, json_transform(payload, '{_INTERACTION_SHAPE}') AS j FROM batch_events
                      WHERE kind = 'interaction' AND line_no IN (SELECT line_no FROM batch_fresh
                                                                 WHERE kind = 'interaction')) b
            """, source)
            con.execute(f"""
                INSERT INTO raw.feedback
                SELECT b.key, j.request_id, (b.ts AT TIME ZONE 'UTC')::DATE, b.ts, j.feedback_type,
                       j.source, j.thumb, j.rating, j.rating_scale, j.correction, j.success, j.comment,
                       j.user_hash, coalesce(j.metadata, '{{}}'), $1, b.line_no, $2, $3
                FROM (SELECT *, json_transform(payload, '{_FEEDBACK_SHAPE}') AS j FROM batch_events
                      WHERE kind = 'feedback' AND line_no IN (SELECT line_no FROM batch_fresh
                                                              WHERE kind = 'feedback')) b
            """, source)
            lines_new, events_new = con.execute(
                "SELECT count(DISTINCT line_no), count(*) FROM batch_fresh").fetchall()[0]
            con.execute("INSERT INTO raw.quarantine SELECT * FROM batch_quarantine")
            con.execute(
                """
                UPDATE raw.ingest_ledger SET
                    lines_done = ?, lines_ingested = lines_ingested + ?,
                    lines_quarantined = lines_quarantined + ?, lines_duplicate = lines_duplicate + ?,
                    lines_blank = lines_blank + ?, events_ingested = events_ingested + ?,
                    status = ?, finished_at = CASE WHEN ? THEN now() END
                WHERE file_hash = ?
                """,
                [lines_done, lines_new, len(self.quarantine), self.valid_lines - lines_new, self.blank_lines,
                 events_new, "done" if finished else "in_progress", finished, self.file_hash],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("batch_events")
            con.unregister("batch_quarantine")
        return lines_new, events_new


ProgressFn = Callable[[int], None]


def detect_format(path: Path, mapping: FieldMapping | None) -> str:
    if mapping is not None:
        return f"mapping:{mapping.name}"
    if container_of(path) == "parquet":
        return "native"
    for line in read_lines(path):
        if line.raw.strip():
            try:
                record = orjson.loads(line.raw)
            except orjson.JSONDecodeError:
                continue
            return "openai" if isinstance(record, dict) and looks_like_openai_pair(record) else "native"
    return "native"


def mapping_beside(path: Path) -> FieldMapping | None:
    """A `_mapping.yaml` in a file's folder says how every file of that folder is read."""
    candidate = path.parent / MAPPING_FILE_NAME
    return load_mapping(candidate) if candidate.exists() else None


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    mapping: FieldMapping | None = None,
    format_name: str = "auto",
    batch_lines: int = DEFAULT_BATCH_LINES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    progress: ProgressFn | None = None,
) -> FileReport:
    started = time.perf_counter()
    ensure_raw_layer(con)
    path = path.resolve()
    file_hash = content_hash(path)
    size = path.stat().st_size
    mapping = mapping or mapping_beside(path)
    fmt = detect_format(path, mapping) if format_name == "auto" or mapping else format_name
    # Native JSONL is validated straight from its bytes; everything else goes through an adapter.
    adapter = None if fmt == "native" and container_of(path) == "jsonl" else adapter_for(fmt, mapping)

    ledger = con.execute(
        "SELECT status, lines_done, first_path FROM raw.ingest_ledger WHERE file_hash = ?", [file_hash]
    ).fetchall()
    if ledger and ledger[0][0] == "done":
        outcome = "already_ingested" if ledger[0][2] == str(path) else "copy_of_ingested"
        con.execute("INSERT INTO raw.ingest_files VALUES (?, ?, ?, now())", [str(path), file_hash, outcome])
        return _report(con, path, file_hash, outcome, 0, time.perf_counter() - started)
    if ledger:
        outcome, skip = "resumed", ledger[0][1]
    else:
        outcome, skip = "ingested", 0
        con.execute(
            "INSERT INTO raw.ingest_ledger VALUES (?, ?, ?, ?, 'in_progress', 0, 0, 0, 0, 0, 0, now(), NULL)",
            [file_hash, str(path), size, fmt],
        )
    con.execute("INSERT INTO raw.ingest_files VALUES (?, ?, ?, now())", [str(path), file_hash, outcome])

    lines_done = _load_lines(con, path, file_hash, adapter, skip, batch_lines, max_line_bytes, progress)
    return _report(con, path, file_hash, outcome, lines_done - skip, time.perf_counter() - started)


def _load_lines(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, adapter: Adapter | None, skip: int,
                batch_lines: int, max_line_bytes: int, progress: ProgressFn | None) -> int:
    """Validate lines into batches and commit each batch in order; return the last line number read.

    One batch is committed by a helper thread while the next is parsed: DuckDB releases the GIL while it
    works, so parsing and writing overlap. Commits stay strictly sequential, so the ledger's progress
    always describes a prefix of the file.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flywheel-commit") as writer:
        pending: Future | None = None

        def submit(batch: _Batch, done: int, finished: bool, lines: int) -> Future:
            nonlocal pending
            if pending is not None:
                pending.result()  # surface a failed commit before queuing the next
            pending = writer.submit(batch.commit, con, done, finished)
            if progress:
                pending.add_done_callback(lambda _: progress(lines))
            return pending

        batch = _Batch(str(path), file_hash)
        lines_done = skip
        for line in read_lines(path, skip=skip):
            lines_done = line.line_no
            if not line.raw.strip():
                batch.blank_lines += 1
            else:
                try:
                    parsed = parse_line(line.raw, adapter, max_line_bytes)
                except LineError as error:
                    batch.reject(line, str(error))
                else:
                    batch.add(line.line_no, parsed)
            if (lines_done - skip) % batch_lines == 0:
                submit(batch, lines_done, False, batch_lines)
                batch = _Batch(str(path), file_hash)
        submit(batch, lines_done, True, (lines_done - skip) % batch_lines).result()
    return lines_done


def _report(con, path: Path, file_hash: str, outcome: str, new_lines: int, seconds: float) -> FileReport:
    (fmt, size, done, ingested, quarantined, duplicate, blank, events) = con.execute(
        """SELECT format, size_bytes, lines_done, lines_ingested, lines_quarantined, lines_duplicate,
                  lines_blank, events_ingested FROM raw.ingest_ledger WHERE file_hash = ?""",
        [file_hash],
    ).fetchall()[0]
    examples = [
        f"{path}:{line_no}: {reason}"
        for line_no, reason in con.execute(
            "SELECT line_no, reason FROM raw.quarantine WHERE file_hash = ? ORDER BY line_no LIMIT 5", [file_hash]
        ).fetchall()
    ]
    return FileReport(str(path), file_hash, fmt, outcome, done, ingested, quarantined, duplicate, blank, events,
                      new_lines, seconds, size, examples)


def ingest_paths(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[Path],
    *,
    mapping: FieldMapping | None = None,
    format_name: str = "auto",
    batch_lines: int = DEFAULT_BATCH_LINES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    progress: ProgressFn | None = None,
) -> list[FileReport]:
    return [
        ingest_file(con, path, mapping=mapping, format_name=format_name, batch_lines=batch_lines,
                    max_line_bytes=max_line_bytes, progress=progress)
        for path in paths
    ]
