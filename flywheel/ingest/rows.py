"""The raw rows that DuckDB makes of a block's validated events, and the Parquet segments that hold them.

`validate.py` writes a block's valid events as JSON files; the statements here turn them into the columns of
the raw layer, with explicit types (no inference, and nothing read that is not stored). Blocks of large files
become Parquet segments in the process that validated them (`prepare_block`), so that the workers, not the one
process that commits in order, do DuckDB's share of the work; blocks of small files are inserted into the
DuckDB file by the loader with the same statements.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import duckdb

from flywheel.ingest.raw_layer import KINDS, SEGMENT_FORMAT, event_columns
from flywheel.ingest.validate import META_FIELDS, Block, BlockResult, BlockSpec, quarantine_row, validate_block
from flywheel.warehouse import sql_literal


def _read_columns(kind: str) -> str:
    """The fields read from a block file's events, with their DuckDB types, as `read_json` takes them."""
    columns = {c.name: c.type for c in event_columns(kind) if c.read} | META_FIELDS
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"


_COLUMNS = {kind: _read_columns(kind) for kind in KINDS}
QUARANTINE_COLUMNS = "{'line_no': 'BIGINT', 'reason': 'VARCHAR', 'raw_text': 'VARCHAR', 'raw_base64': 'VARCHAR'}"
KEY_COLUMNS = "{'l': 'BIGINT', 'k': 'VARCHAR'}"
_DUCKDB_MAX_OBJECT_BYTES = 16 << 20  # read_json's default maximum_object_size
_META_BYTES = 64 << 10  # room for the meta fields in front of an event's own line


def read_block(paths: list[str], columns: str, widest: int = 0) -> str:
    size = f", maximum_object_size = {widest + 1024:d}" if widest + 1024 > _DUCKDB_MAX_OBJECT_BYTES else ""
    files = "[" + ", ".join(map(sql_literal, paths)) + "]"
    return f"read_json({files}, format = 'newline_delimited', columns = {columns}{size})"


def event_rows(kind: str, paths: list[str], source_file: str, file_hash: str, max_line_bytes: int) -> str:
    """A SELECT of the raw table's columns, in its order and with its names, from block files of one kind."""
    source, digest = sql_literal(source_file), sql_literal(file_hash)
    found = read_block(paths, _COLUMNS[kind], max_line_bytes + _META_BYTES)
    selected = ", ".join(f'{c.expression.replace("{source}", source).replace("{digest}", digest)} AS "{c.name}"'
                         for c in event_columns(kind))
    return f"SELECT {selected} FROM {found}"


UNREADABLE = re.compile(r'JSON transform error in file "(?P<file>[^"]+)", in line \d+: (?P<reason>[^\n]+)')
_META_PREFIX = re.compile(rb'\{"_fw_line":(\d+),"_fw_ts":-?\d+,(?:"_fw_key":"(?:[^"\\]|\\.)*",)?')


def quarantine_unreadable(results: list[BlockResult], error: duckdb.InvalidInputException) -> bool:
    """Lines that meet the contract but that DuckDB cannot read (a key repeated within an object it reads as a
    struct: msgspec takes the last value, DuckDB refuses the object) move to their block's quarantine. False
    when the error is of another kind, or names no such line."""
    found = UNREADABLE.search(str(error))
    holder = next((r for r in results if found and found["file"] in r.outputs.values()), None)
    # DuckDB's line number is not that of the file for objects inside lists: find the lines.
    return holder is not None and bool(_move_to_quarantine(holder, found["file"], f"DuckDB: {found['reason']}"))


class _Members(dict):
    repeated = False


def _object_pairs(pairs: list[tuple[str, object]]) -> _Members:
    members = _Members(pairs)
    members.repeated = len(members) < len(pairs)
    return members


def _has_repeated_keys(event: bytes) -> bool:
    """A key repeated in an object DuckDB reads as a struct: the event itself, a message, the response."""
    record = json.loads(event, object_pairs_hook=_object_pairs)
    objects = [record, record.get("response"), *(record.get("messages") or [])]
    return any(isinstance(part, _Members) and part.repeated for part in objects)


def _move_to_quarantine(result: BlockResult, path: str, reason: str) -> int:
    """Move the events of a block file that DuckDB cannot store to the block's quarantine; return how many."""
    kind = next(kind for kind, output in result.outputs.items() if output == path)
    events = Path(path).read_bytes().splitlines(keepends=True)
    bad = [index for index, event in enumerate(events) if _has_repeated_keys(event)]
    if not bad:
        return 0
    rows = []
    for index in bad:
        prefix = _META_PREFIX.match(events[index])
        if prefix is None:
            raise ValueError(f"{path}:{index + 1}: not a line this loader wrote")
        # The line as it came, but for any whitespace before its opening brace.
        rows.append(quarantine_row(int(prefix[1]), reason, b"{" + events[index][prefix.end():].rstrip(b"\n")))
    drop = set(bad)
    Path(path).write_bytes(b"".join(e for i, e in enumerate(events) if i not in drop))
    if kind in result.keys:  # one key per event, in the same order
        keys = Path(result.keys[kind]).read_bytes().splitlines(keepends=True)
        Path(result.keys[kind]).write_bytes(b"".join(k for i, k in enumerate(keys) if i not in drop))
    if result.quarantine_path is None:
        result.quarantine_path = path.removesuffix(f"-{kind}.jsonl") + "-quarantine.jsonl"
    with open(result.quarantine_path, "ab") as handle:
        handle.writelines(rows)
    result.rows[kind] -= len(bad)
    result.valid_lines -= len(bad)
    result.quarantined += len(bad)
    result.widest_quarantine_row = max(result.widest_quarantine_row, *map(len, rows))
    return len(bad)


# zstd at its fastest level: files as small as at its default level, written as fast as snappy's (measured:
# 9.1 MB for a block's 192k interactions, against 15.8 MB with snappy).
_worker_con: duckdb.DuckDBPyConnection | None = None


def _connection() -> duckdb.DuckDBPyConnection:
    # One in-memory DuckDB per process, on one thread: the other cores run the other workers.
    global _worker_con
    if _worker_con is None:
        _worker_con = duckdb.connect(config={"threads": 1, "memory_limit": "512MB"})
    return _worker_con


def prepare_block(block: Block, spec: BlockSpec) -> BlockResult:
    """Validate a block and, for a large file (`spec.segments`), write its events as Parquet segments."""
    result = validate_block(block, spec)
    if spec.segments:
        write_segments(result, spec)
    return result


def write_segments(result: BlockResult, spec: BlockSpec) -> None:
    """Turn the block's event files into Parquet segments (`result.segments`), one per kind with events."""
    con = _connection()
    con.execute(f"SET temp_directory = {sql_literal(spec.workdir)}")  # should it spill: the run's own folder
    for kind, path in list(result.outputs.items()):
        target = path.removesuffix(".jsonl") + ".parquet"
        rows = event_rows(kind, [path], spec.source_file, spec.file_hash, spec.max_line_bytes)
        while result.rows[kind]:  # again without any lines DuckDB refused, while any are left
            try:
                con.execute(f"COPY ({rows}) TO {sql_literal(target)} ({SEGMENT_FORMAT})")
            except duckdb.InvalidInputException as error:
                if quarantine_unreadable([result], error):
                    continue
                raise
            result.segments[kind] = target
            break
        del result.outputs[kind]
        os.unlink(path)
