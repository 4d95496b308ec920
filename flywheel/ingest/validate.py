"""Validating a block of lines against the contract, in whichever process runs it.

A block is a run of whole lines from one file. Each line is validated (msgspec, straight from its bytes for
native events). Valid events are written, as they are, to a newline-delimited JSON file per kind, which
DuckDB then reads in parallel; what DuckDB needs besides (line number, key, UTC timestamp) comes back as
plain lists in the same order, to be joined by position. Invalid lines come back as quarantine rows with
the reason. This module stays light (no DuckDB, no Arrow) so that worker processes start fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import msgspec
import orjson

from flywheel.contracts import EVENT_DECODER, Event, InteractionEvent, ValidationError, validate
from flywheel.ingest.formats import Adapter, adapter_for
from flywheel.ingest.mapping import load_mapping

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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


@dataclass
class Block:
    """Whole lines of one file: given (compressed or columnar sources), or a byte range the worker reads."""

    first_line: int
    lines: list[bytes] | None = None
    path: str | None = None
    start: int = 0
    end: int = 0

    def read(self) -> list[bytes]:
        if self.lines is not None:
            return self.lines
        with open(self.path, "rb") as handle:  # type: ignore[arg-type]
            handle.seek(self.start)
            lines = handle.read(self.end - self.start).split(b"\n")
        if lines and lines[-1] == b"":  # the newline that ends the last line
            lines.pop()
        return lines


@dataclass
class KindOutput:
    """The valid events of one kind in a block: a JSONL file, and per row its line, key and timestamp."""

    path: str
    line_nos: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # request_id of an interaction, feedback_id of feedback
    ts_micros: list[int] = field(default_factory=list)  # the event's timestamp in UTC, as DuckDB stores it


@dataclass
class BlockResult:
    first_line: int
    last_line: int
    outputs: dict[str, KindOutput] = field(default_factory=dict)  # by kind: interaction, feedback
    quarantine: list[tuple[int, str, bytes]] = field(default_factory=list)  # (line, reason, raw)
    valid_lines: int = 0
    blank_lines: int = 0


Parsed = list[tuple[Event, bytes]]  # each event with the JSON object it is stored from


@cache
def _adapter(spec: BlockSpec) -> Adapter:
    mapping = load_mapping(Path(spec.mapping_path)) if spec.mapping_path else None
    return adapter_for("native" if mapping else spec.format, mapping)


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
        return [(validate(event), orjson.dumps(event)) for event in events]
    except UnicodeDecodeError as error:
        raise LineError(f"not valid UTF-8 at byte {error.start}") from error
    except ValidationError as error:
        raise LineError(f"contract: {error}") from error
    except (msgspec.DecodeError, orjson.JSONDecodeError) as error:
        raise LineError(f"invalid JSON: {error}") from error


def validate_block(block: Block, spec: BlockSpec) -> BlockResult:
    adapter = None if spec.native_bytes else _adapter(spec)
    stem = os.path.join(spec.workdir, f"block-{block.first_line:012d}")
    lines = block.read()
    result = BlockResult(block.first_line, block.first_line + len(lines) - 1)
    rows: dict[str, list[bytes]] = {"interaction": [], "feedback": []}
    for line_no, line in enumerate(lines, start=block.first_line):
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            result.blank_lines += 1
            continue
        try:
            parsed = parse_line(raw, adapter, spec.max_line_bytes)
        except LineError as error:
            result.quarantine.append((line_no, str(error), raw))
            continue
        result.valid_lines += 1
        for event, payload in parsed:
            if isinstance(event, InteractionEvent):
                kind, key = "interaction", event.request_id
            else:
                kind, key = "feedback", event.stable_id
            if kind not in result.outputs:
                result.outputs[kind] = KindOutput(f"{stem}-{kind}.jsonl")
            output = result.outputs[kind]
            output.line_nos.append(line_no)
            output.keys.append(key)
            output.ts_micros.append((event.timestamp - _EPOCH) // _MICROSECOND)
            rows[kind].append(payload)
    for kind, output in result.outputs.items():
        with open(output.path, "wb") as handle:
            handle.write(b"\n".join(rows[kind]))
            handle.write(b"\n")
    return result
