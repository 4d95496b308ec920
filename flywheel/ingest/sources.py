"""Reading input files as numbered lines, whatever their container: JSONL, gzip-ed JSONL or Parquet."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3
import orjson

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES


@dataclass(slots=True)
class SourceLine:
    line_no: int  # 1-based line (JSONL) or row (Parquet) number
    raw: bytes  # the line without its newline; a Parquet row is rendered as JSON


def is_supported(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(SUPPORTED_SUFFIXES) and not name.startswith((".", "_"))


def content_hash(path: Path, chunk: int = 8 << 20) -> str:
    """Identity of a file's bytes: a renamed copy has the same hash, an edited file a new one."""
    # blake3: several times faster than hashlib's hashes, and as collision-resistant. Read, not memory-mapped:
    # a mapped file truncated meanwhile (logrotate's copytruncate) kills the process with SIGBUS, where a
    # read only comes up short (measured: mapping saved 0.15 s a GB).
    digest = blake3.blake3()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest(length=20)


class DamagedInput(Exception):
    """A file's container could not be read past its first `records` lines (or rows); those are good."""

    def __init__(self, records: int, reason: str) -> None:
        super().__init__(reason)
        self.records = records


def container_of(path: Path) -> str:
    return "parquet" if path.name.lower().endswith(PARQUET_SUFFIXES) else "jsonl"


def is_gzip(path: Path) -> bool:
    """Whether the file's bytes are gzip, whatever its name says (a plain file named .gz is read as plain)."""
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def read_lines(path: Path, skip: int = 0) -> Iterator[SourceLine]:
    """Stream a file's records one at a time; memory stays bounded by the longest line (or row group). A
    damaged container (a truncated or corrupt gzip, a file that is not Parquet) raises DamagedInput once the
    records before the damage are read."""
    if container_of(path) == "parquet":
        yield from _parquet_rows(path, skip)
        return
    compressed = is_gzip(path)
    line_no = 0
    try:
        with (gzip.open if compressed else open)(path, "rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                if line_no <= skip:
                    continue
                yield SourceLine(line_no, line.rstrip(b"\r\n"))
    except (EOFError, OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        what = "the gzip stream" if compressed else "the file"
        raise DamagedInput(line_no, f"{what} cannot be read after line {line_no:,}: {error}") from error


def _parquet_rows(path: Path, skip: int) -> Iterator[SourceLine]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row_no = 0
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=10_000):
            if row_no + batch.num_rows <= skip:
                row_no += batch.num_rows
                continue
            for row in batch.to_pylist():
                row_no += 1
                if row_no <= skip:
                    continue
                yield SourceLine(row_no, orjson.dumps(row, default=str))
    except (pa.ArrowException, OSError) as error:
        raise DamagedInput(row_no, f"not readable as Parquet after row {row_no:,}: {error}") from error


def discover(paths: list[Path]) -> list[Path]:
    """Expand folders into the input files below them, oldest first, so that ingestion order is stable.
    Paths come back absolute: they name the file in the ledger and in every error, wherever the command ran."""
    found: list[Path] = []
    for path in (p.absolute() for p in paths):
        if path.is_dir():
            found.extend(p for p in path.rglob("*") if p.is_file() and is_supported(p))
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return sorted(set(found), key=lambda p: (p.stat().st_mtime_ns, str(p)))
