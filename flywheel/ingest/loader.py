"""Exactly-once, resumable loading of input files into the raw layer.

A file is known by the hash of its content. Its lines are validated and written in batches; each batch
commits its rows, its quarantined lines and the ledger's progress in one DuckDB transaction, so a crash
at any point leaves either the whole batch or none of it, and the next run resumes after the last
committed line. Rows are keyed by `request_id` (interactions) and `feedback_id` (feedback): a renamed
copy, a re-run or an overlapping export adds nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from pydantic import ValidationError

from flywheel.contracts import EVENT_ADAPTER, FeedbackEvent, InteractionEvent
from flywheel.ingest.formats import Adapter, adapter_for, looks_like_openai_pair
from flywheel.ingest.mapping import FieldMapping, load_mapping
from flywheel.ingest.sources import SourceLine, container_of, content_hash, read_lines
from flywheel.warehouse import ensure_raw_layer

DEFAULT_BATCH_LINES = 50_000
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


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in item["loc"] if p not in ("interaction", "feedback"))
        got = item.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {str(got)[:60]!r})"
        parts.append(f"{where or 'event'}: {item['msg']}{shown}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_line(line: SourceLine, adapter: Adapter, max_line_bytes: int) -> list[InteractionEvent | FeedbackEvent]:
    """Validate one line against the contract; raise LineError naming the reason."""
    if len(line.raw) > max_line_bytes:
        raise LineError(f"line is {len(line.raw):,} bytes, over the limit of {max_line_bytes:,}")
    try:
        line.raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LineError(f"not valid UTF-8 at byte {error.start}") from error
    try:
        record = orjson.loads(line.raw)
    except orjson.JSONDecodeError as error:
        raise LineError(f"invalid JSON: {error}") from error
    if not isinstance(record, dict):
        raise LineError(f"expected a JSON object, got {type(record).__name__}")
    try:
        raw_events = adapter(record)
    except (ValueError, TypeError, KeyError) as error:
        raise LineError(f"cannot map record: {error}") from error
    if not raw_events:
        raise LineError("the mapping produced no event from this record")
    events = []
    for raw_event in raw_events:
        if "kind" not in raw_event:
            raise LineError("missing field 'kind' (expected 'interaction' or 'feedback')")
        try:
            events.append(EVENT_ADAPTER.validate_python(raw_event))
        except ValidationError as error:
            raise LineError(f"{raw_event.get('kind')}: {describe_validation_error(error)}") from error
    return events


def _json(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", exclude_none=True)
    elif isinstance(value, list):
        value = [v.model_dump(mode="json", exclude_none=True) if hasattr(v, "model_dump") else v for v in value]
    return orjson.dumps(value).decode()


INTERACTION_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("event_date", pa.date32()), ("ts", pa.timestamp("us", tz="UTC")),
    ("app_id", pa.string()), ("model", pa.string()), ("provider", pa.string()), ("messages", pa.string()),
    ("tools", pa.string()), ("response", pa.string()), ("params", pa.string()), ("latency_ms", pa.float64()),
    ("tokens_in", pa.int64()), ("tokens_out", pa.int64()), ("cost_usd", pa.float64()), ("status", pa.string()),
    ("error", pa.string()), ("user_hash", pa.string()), ("session_hash", pa.string()),
    ("tags", pa.list_(pa.string())), ("metadata", pa.string()), ("source_file", pa.string()),
    ("source_line", pa.int64()), ("file_hash", pa.string()), ("ingested_at", pa.timestamp("us", tz="UTC")),
])
FEEDBACK_SCHEMA = pa.schema([
    ("feedback_id", pa.string()), ("request_id", pa.string()), ("event_date", pa.date32()),
    ("ts", pa.timestamp("us", tz="UTC")), ("feedback_type", pa.string()), ("source", pa.string()),
    ("thumb", pa.string()), ("rating", pa.float64()), ("rating_scale", pa.float64()),
    ("correction", pa.string()), ("success", pa.bool_()), ("comment", pa.string()), ("user_hash", pa.string()),
    ("metadata", pa.string()), ("source_file", pa.string()), ("source_line", pa.int64()),
    ("file_hash", pa.string()), ("ingested_at", pa.timestamp("us", tz="UTC")),
])
QUARANTINE_SCHEMA = pa.schema([
    ("source_file", pa.string()), ("file_hash", pa.string()), ("line_no", pa.int64()), ("reason", pa.string()),
    ("raw_text", pa.string()), ("raw_bytes", pa.binary()), ("quarantined_at", pa.timestamp("us", tz="UTC")),
])


class _Batch:
    """Rows accumulated column-wise between two commits."""

    def __init__(self, source_file: str, file_hash: str) -> None:
        self.source_file, self.file_hash = source_file, file_hash
        self.now = datetime.now(UTC)
        self.interactions: list[tuple] = []
        self.feedback: list[tuple] = []
        self.quarantine: list[tuple] = []
        self.valid_lines = 0
        self.blank_lines = 0

    def add(self, line_no: int, event: InteractionEvent | FeedbackEvent) -> None:
        if isinstance(event, InteractionEvent):
            self.interactions.append((
                event.request_id, event.timestamp.date(), event.timestamp, event.app_id, event.model,
                event.provider, _json(event.messages), _json(event.tools), _json(event.response),
                _json(event.params), event.latency_ms, event.tokens_in, event.tokens_out, event.cost_usd,
                event.status, event.error, event.user_hash, event.session_hash, list(event.tags),
                _json(event.metadata), self.source_file, line_no, self.file_hash, self.now,
            ))
        else:
            self.feedback.append((
                event.stable_id, event.request_id, event.timestamp.date(), event.timestamp,
                event.feedback_type, event.source, event.thumb, event.rating, event.rating_scale,
                event.correction, event.success, event.comment, event.user_hash, _json(event.metadata),
                self.source_file, line_no, self.file_hash, self.now,
            ))

    def reject(self, line: SourceLine, reason: str) -> None:
        text = line.raw.decode("utf-8", errors="replace")
        try:
            line.raw.decode("utf-8")
            raw_bytes = None
        except UnicodeDecodeError:
            raw_bytes = line.raw  # keep the exact bytes when text cannot hold them
        self.quarantine.append((self.source_file, self.file_hash, line.line_no, reason, text, raw_bytes, self.now))

    @staticmethod
    def _table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
        return pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
                                    schema=schema)

    def commit(self, con: duckdb.DuckDBPyConnection, lines_done: int, finished: bool) -> tuple[int, int]:
        """Write the batch and the ledger's progress atomically; return (lines ingested, events ingested)."""
        interactions = self._table(self.interactions, INTERACTION_SCHEMA)  # noqa: F841 (read by DuckDB)
        feedback = self._table(self.feedback, FEEDBACK_SCHEMA)  # noqa: F841
        quarantine = self._table(self.quarantine, QUARANTINE_SCHEMA)  # noqa: F841
        con.execute("BEGIN TRANSACTION")
        try:
            new_i = con.execute("""
                INSERT INTO raw.interactions
                SELECT b.* FROM interactions b
                WHERE NOT EXISTS (SELECT 1 FROM raw.interactions r WHERE r.request_id = b.request_id)
                QUALIFY row_number() OVER (PARTITION BY b.request_id ORDER BY b.source_line) = 1
                RETURNING source_line
            """).fetchall()
            new_f = con.execute("""
                INSERT INTO raw.feedback
                SELECT b.* FROM feedback b
                WHERE NOT EXISTS (SELECT 1 FROM raw.feedback r WHERE r.feedback_id = b.feedback_id)
                QUALIFY row_number() OVER (PARTITION BY b.feedback_id ORDER BY b.source_line) = 1
                RETURNING source_line
            """).fetchall()
            con.execute("INSERT INTO raw.quarantine SELECT * FROM quarantine")
            lines_new = len({row[0] for row in new_i} | {row[0] for row in new_f})
            events_new = len(new_i) + len(new_f)
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
    adapter = adapter_for(fmt, mapping)

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

    batch = _Batch(str(path), file_hash)
    lines_done = skip
    for line in read_lines(path, skip=skip):
        lines_done = line.line_no
        if not line.raw.strip():
            batch.blank_lines += 1
        else:
            try:
                events = parse_line(line, adapter, max_line_bytes)
            except LineError as error:
                batch.reject(line, str(error))
            else:
                batch.valid_lines += 1
                for event in events:
                    batch.add(line.line_no, event)
        if lines_done - skip and (lines_done - skip) % batch_lines == 0:
            batch.commit(con, lines_done, finished=False)
            if progress:
                progress(batch_lines)
            batch = _Batch(str(path), file_hash)
    batch.commit(con, lines_done, finished=True)
    if progress:
        progress((lines_done - skip) % batch_lines)
    return _report(con, path, file_hash, outcome, lines_done - skip, time.perf_counter() - started)


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
