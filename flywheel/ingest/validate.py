"""Validating a block of lines against the contract, in whichever process runs it.

A block is a run of whole lines from one file. Each line is validated (msgspec, straight from its bytes for
native events). Valid events are written as they are, to a newline-delimited JSON file per kind that DuckDB
then reads in parallel, with what DuckDB needs besides put in front of each object's fields: its line
number, its UTC timestamp in microseconds and, for feedback, its key (`META_FIELDS`). The contracts forbid
unknown fields, so these names can never clash with an event's own. Each event's line and key also go to a
small file of their own, for the check against keys already stored (unless the events become Parquet
segments, which hold both); invalid lines go to a quarantine file with their reason and exact bytes. DuckDB
makes the raw layer's rows of these files (`rows.py`).
"""

from __future__ import annotations

import base64
import gc
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import orjson

from flywheel.contracts import EVENT_DECODER, Event, InteractionEvent, ValidationError, validate
from flywheel.ingest.formats import Adapter, adapter_for
from flywheel.ingest.mapping import ENTRY_KEY, load_mapping

# Microseconds since the epoch, exactly: timedelta floor division (no float on the way).
_EPOCH, _MICROSECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
META_FIELDS = {"_fw_line": "BIGINT", "_fw_ts": "BIGINT", "_fw_key": "VARCHAR"}
_KEY_FILE = {"interaction": "interaction-keys", "feedback": "feedback-keys"}
# A stored event: the meta fields, then what follows the event's opening brace (an event is a JSON object with
# at least its required fields, so the result is one valid object). The loader's `_META_PREFIX` reads these.
_INTERACTION_LINE = b'{"_fw_line":%d,"_fw_ts":%d,%b\n'
_FEEDBACK_LINE = b'{"_fw_line":%d,"_fw_ts":%d,"_fw_key":%b,%b\n'
_KEY_LINE = b'{"l":%d,"k":%b}\n'  # each event's line and key alone: checked against stored keys unparsed


class LineError(ValueError):
    """Why one line cannot be ingested."""


@dataclass(frozen=True)
class BlockSpec:
    """How the lines of one file are read; the same for all its blocks."""

    format: str  # native | openai | mapping:<name>
    native_bytes: bool  # native JSONL: validate the bytes directly and store the line as it is
    mapping_path: str | None
    max_line_bytes: int
    workdir: str
    source_file: str = ""
    file_hash: str = ""
    segments: bool = False  # write the events as Parquet segments (see `rows.prepare_block`)


@dataclass
class Block:
    """Whole lines of one file: given (compressed or columnar sources), or a byte range the worker reads."""

    first_line: int
    lines: list[bytes] | None = None
    path: str | None = None
    start: int = 0
    end: int = 0

    def read(self) -> Iterator[bytes | memoryview]:
        """The block's lines without their line ends; a byte range's lines are views into one buffer."""
        if self.lines is not None:
            yield from self.lines
            return
        size = self.end - self.start
        buffer = _buffer(size)
        with open(self.path, "rb", buffering=0) as handle:  # type: ignore[arg-type]
            handle.seek(self.start)
            view = memoryview(buffer)
            if handle.readinto(view[:size]) != size:
                raise OSError(f"{self.path} changed while it was read")
        find, position = buffer.find, 0
        while position < size:
            newline = find(b"\n", position, size)
            if newline < 0:  # a last line without a newline
                newline = size
            end = newline - 1 if newline > position and buffer[newline - 1] == 13 else newline  # CR LF
            yield view[position:end]
            position = newline + 1


_reused: bytearray | None = None


def start_worker() -> None:
    """Set up a worker process for the life of the pool.

    One read buffer is kept: reading into memory already mapped spares the kernel a page fault per 4 KiB of
    every block (measured: most of a worker's system time). Workers run at a lower priority than the
    process that commits blocks in order, the pipeline's bottleneck: on a machine with fewer free cores
    than processes, the committer keeps a core and the workers share the rest."""
    global _reused
    _reused = bytearray()
    os.nice(10)


def _buffer(size: int) -> bytearray:
    global _reused
    if _reused is None:
        return bytearray(size)
    if len(_reused) < size:
        _reused = bytearray(size)
    return _reused


@dataclass
class BlockResult:
    """What a block holds, as files for DuckDB to read: valid events per kind (`outputs`), and the lines
    that failed with their reasons (`quarantine_path`)."""

    first_line: int
    last_line: int
    outputs: dict[str, str] = field(default_factory=dict)  # kind (interaction, feedback) -> JSONL path
    # kind -> JSONL path of each event's line (l) and key (k); none when the events become segments
    keys: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # kind -> events written
    segments: dict[str, str] = field(default_factory=dict)  # kind -> Parquet path, once `outputs` are converted
    quarantine_path: str | None = None
    quarantined: int = 0
    widest_quarantine_row: int = 0  # bytes: DuckDB must be told to read JSON objects this large
    valid_lines: int = 0
    blank_lines: int = 0


Parsed = Sequence[tuple[Event, bytes | memoryview]]  # each event with the JSON object it is stored from


@cache
def _adapter(spec: BlockSpec) -> Adapter:
    mapping = load_mapping(Path(spec.mapping_path)) if spec.mapping_path else None
    return adapter_for("native" if mapping else spec.format, mapping)


_BOM = b"\xef\xbb\xbf"
_BOUNDED = re.compile(r"<= .* - at `\$\.(latency_ms|tokens_in|tokens_out|cost_usd)`")
_BOUND_NAMES = {"latency_ms": "latency_ms_max", "tokens_in": "tokens_in_max", "tokens_out": "tokens_out_max",
                "cost_usd": "cost_usd_max"}


def _line_offset(raw: bytes, error: UnicodeDecodeError) -> int:
    """Where in the line a decoding error is: msgspec counts from the start of the string value it was in."""
    if error.object is raw or bytes(error.object) == raw:
        return error.start
    try:  # the first byte of the line that is not UTF-8
        raw.decode("utf-8")
    except UnicodeDecodeError as whole:
        return whole.start
    return error.start


class PartlyValid(LineError):
    """A line some of whose events are valid (`parsed`, stored) and others not (the reason names them)."""

    def __init__(self, reason: str, parsed: Parsed) -> None:
        super().__init__(reason)
        self.parsed = parsed


def _validate_each(events: list[dict[str, Any]]) -> Parsed:
    """Each event of a line on its own: a valid interaction is kept when the feedback beside it fails."""
    parsed, failures = [], []
    for event in events:
        entry = event.pop(ENTRY_KEY, None) or f"{event.get('kind', '?')} event"
        try:
            parsed.append((validate(event), orjson.dumps(event)))
        except ValidationError as error:
            failures.append(f"{entry}: contract: {error}")
    if failures and parsed:
        raise PartlyValid("; ".join(failures), parsed)
    if failures:
        raise LineError("; ".join(failures))
    return parsed


def parse_line(raw: bytes, adapter: Adapter | None, max_line_bytes: int) -> Parsed:
    """Validate one line (adapter None: native JSON bytes); raise LineError naming the reason."""
    if len(raw) > max_line_bytes:
        raise LineError(f"line is {len(raw):,} bytes, over the limit of {max_line_bytes:,}")
    try:
        if adapter is None:
            return [(EVENT_DECODER.decode(raw), raw)]
        record = orjson.loads(raw)
        if not isinstance(record, dict):
            raise LineError(f"expected a JSON object, got {type(record).__name__}")
        try:
            events = adapter(record)
        except (ValueError, TypeError, KeyError) as error:
            raise LineError(f"cannot map record: {error}") from error
        if not events:
            raise LineError("the mapping produced no event from this record")
        return _validate_each(events)
    except UnicodeDecodeError as error:
        raise LineError(f"not valid UTF-8 at byte {_line_offset(raw, error)} of the line") from error
    except RecursionError as error:
        raise LineError("JSON nested too deep to read (over about 1,000 levels)") from error
    except ValidationError as error:
        bounded = _BOUNDED.search(str(error))
        hint = f" (a plausibility bound: {_BOUND_NAMES[bounded[1]]} in schemas/plausibility.yaml)" if bounded else ""
        raise LineError(f"contract: {error}{hint}") from error
    except (msgspec.DecodeError, orjson.JSONDecodeError) as error:
        raise LineError(f"invalid JSON: {error}") from error


def validate_block(block: Block, spec: BlockSpec) -> BlockResult:
    # Decoding creates millions of short-lived containers and never a reference cycle: the cycle collector
    # would only rescan them (measured: a quarter of the time of a block).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _validate_block(block, spec)
    finally:
        if collecting:
            gc.enable()


def _validate_block(block: Block, spec: BlockSpec) -> BlockResult:
    adapter = None if spec.native_bytes else _adapter(spec)
    stem = os.path.join(spec.workdir, f"block-{block.first_line:012d}")
    result = BlockResult(block.first_line, block.first_line - 1)
    with ExitStack() as files:
        writers: dict[str, BinaryIO] = {}

        def writer(kind: str) -> BinaryIO:
            if kind not in writers:
                path = f"{stem}-{kind}.jsonl"
                writers[kind] = files.enter_context(open(path, "wb", buffering=1 << 20))
                if kind == "quarantine":
                    result.quarantine_path = path
                elif kind.endswith("-keys"):
                    result.keys[kind.removesuffix("-keys")] = path
                else:
                    result.outputs[kind], result.rows[kind] = path, 0
            return writers[kind]

        # This loop runs once per line of every file: a valid native interaction, the common case, takes
        # the shortest way. It is the hot path of ingestion: measure any change (bench/bench_ingest.py).
        decode, max_bytes, line_no = EVENT_DECODER.decode, spec.max_line_bytes, block.first_line - 1
        interactions = interaction_keys = None
        # A segment holds its events' lines and keys: the check against stored keys reads them from it.
        key_files = not spec.segments
        n_interactions = 0
        for line_no, line in enumerate(block.read(), start=block.first_line):
            event = None
            if adapter is None and len(line) <= max_bytes:
                try:
                    event = decode(line)
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                    event = None  # told apart below: blank, or quarantined with its reason
                if type(event) is InteractionEvent and line[0] == 123:
                    if interactions is None:
                        interactions = writer("interaction").write
                        interaction_keys = writer("interaction-keys").write if key_files else None
                    interactions(_INTERACTION_LINE % (line_no, (event.timestamp - _EPOCH) // _MICROSECOND, line[1:]))
                    if interaction_keys:
                        interaction_keys(_KEY_LINE % (line_no, orjson.dumps(event.request_id)))
                    n_interactions += 1
                    continue
            if event is not None:
                parsed: Parsed = ((event, line),)
            else:
                raw = bytes(line).rstrip(b"\r\n")
                if line_no == 1 and raw.startswith(_BOM):  # written by some Windows tools; not part of the JSON
                    raw = raw[len(_BOM):]
                if not raw or raw.isspace():
                    result.blank_lines += 1
                    continue
                try:
                    parsed = parse_line(raw, adapter, max_bytes)
                except PartlyValid as partly:  # its valid events are stored; the failed ones are on record
                    row = quarantine_row(line_no, str(partly), raw)
                    writer("quarantine").write(row)
                    result.widest_quarantine_row = max(result.widest_quarantine_row, len(row))
                    parsed = partly.parsed
                except LineError as error:
                    row = quarantine_row(line_no, str(error), raw)
                    writer("quarantine").write(row)
                    result.quarantined += 1
                    result.widest_quarantine_row = max(result.widest_quarantine_row, len(row))
                    continue
            result.valid_lines += 1
            for event, payload in parsed:
                micros = (event.timestamp - _EPOCH) // _MICROSECOND
                body = payload[(0 if payload[0] == 123 else bytes(payload).index(b"{")) + 1:]
                if type(event) is InteractionEvent:
                    kind, key = "interaction", orjson.dumps(event.request_id)
                    stored = _INTERACTION_LINE % (line_no, micros, body)
                else:
                    kind, key = "feedback", orjson.dumps(event.stable_id)
                    stored = _FEEDBACK_LINE % (line_no, micros, key, body)
                (writers.get(kind) or writer(kind)).write(stored)
                if key_files:
                    keys = _KEY_FILE[kind]
                    (writers.get(keys) or writer(keys)).write(_KEY_LINE % (line_no, key))
                result.rows[kind] += 1
        if n_interactions:
            result.rows["interaction"] += n_interactions
            result.valid_lines += n_interactions
    result.last_line = line_no
    return result


def quarantine_row(line_no: int, reason: str, raw: bytes) -> bytes:
    """A line that cannot be ingested, as a row of a block's quarantine file."""
    try:
        text, exact = raw.decode("utf-8"), None
    except UnicodeDecodeError:  # keep the exact bytes when text cannot hold them
        text, exact = raw.decode("utf-8", errors="replace"), base64.b64encode(raw).decode()
    return orjson.dumps({"line_no": line_no, "reason": reason, "raw_text": text, "raw_base64": exact}) + b"\n"


