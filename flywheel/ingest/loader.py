"""Exactly-once, resumable loading of input files into the raw layer.

A file is known by the hash of its content. Its lines are cut into blocks; blocks are validated in parallel
(worker processes for large files, see `validate.py`) and committed strictly in order, one or a few
consecutive blocks per DuckDB transaction with their rows (or, for a large file, the Parquet segments the
workers wrote of them, see `flywheel.warehouse`), their quarantined lines and the ledger's progress.
A crash at any point leaves whole blocks or none of them, and the next run resumes after the last committed
line. Rows are keyed by `request_id` (interactions) and `feedback_id` (feedback): a renamed copy, a re-run or
an overlapping export adds nothing twice.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import multiprocessing
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import orjson

from flywheel.ingest.formats import looks_like_openai_pair
from flywheel.ingest.mapping import FieldMapping, MappingError, load_mapping
from flywheel.ingest.raw_layer import (
    FINAL,
    KINDS,
    LedgerEntry,
    advance_ledger,
    close_damaged,
    ensure_raw_layer,
    ledger_counts,
    ledger_entry,
    open_ledger,
    quarantined_lines,
    record_failure,
    record_offer,
    refresh_view,
    register_segment,
    remove_unregistered_segments,
    resolve_quarantine,
    segments_folder,
)
from flywheel.ingest.rows import (
    KEY_COLUMNS,
    QUARANTINE_COLUMNS,
    event_rows,
    prepare_block,
    quarantine_unreadable,
    read_block,
)
from flywheel.ingest.sources import DamagedInput, container_of, content_hash, is_gzip, read_lines
from flywheel.ingest.validate import Block, BlockResult, BlockSpec, LineError, parse_line, start_worker
from flywheel.processes import alive
from flywheel.settings import private_folder
from flywheel.warehouse import WarehouseBusyError, sql_literal, storage_path, transaction, writing

# Big enough that DuckDB writes each block's rows straight to row groups; small enough to bound memory.
DEFAULT_BATCH_LINES = 250_000
DEFAULT_MAX_LINE_BYTES = 1 << 20
MAPPING_FILE_NAME = "_mapping.yaml"
# Smaller files are validated in-process: starting worker processes would cost more than it saves.
PARALLEL_MIN_BYTES = 64 << 20
# Smaller files' events are inserted into the DuckDB file; larger ones' become Parquet segments, written by
# the processes that validate them (a few segments per large file, rather than many small ones).
SEGMENT_MIN_BYTES = 64 << 20

__all__ = ["FileReport", "LineError", "ingest_file", "parse_line"]


@dataclass
class FileReport:
    path: str
    file_hash: str
    format: str
    outcome: str  # ingested | resumed | already_ingested | copy_of_ingested | partial | failed
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
    error: str | None = None  # partial, failed: why the file (or its rest) could not be read
    quarantine_rows: int = 0  # rows in raw.quarantine: the lines quarantined, and failed events of stored lines
    warnings: list[str] = field(default_factory=list)  # about how the file was read (its mapping)
    resolved: int = 0  # quarantine rows of an earlier reading of this content that this one resolved

    @property
    def is_new(self) -> bool:
        """Whether this run read the file (a first or resumed ingestion), not just recognised its content."""
        return self.new_lines > 0 or self.outcome in ("ingested", "resumed")

    @property
    def reconciles(self) -> bool:
        accounted = self.lines_ingested + self.lines_quarantined + self.lines_duplicate + self.lines_blank
        return accounted == self.lines_read


_DUCKDB_ROW_GROUP_ROWS = 122_880


def _commit_blocks(con: duckdb.DuckDBPyConnection, results: list[BlockResult], source_file: str, file_hash: str,
                   finished: bool, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
    """Write validated blocks (consecutive, in file order) and the ledger's progress atomically.

    Values go into these statements as literals: DuckDB's Python binding imports pandas on the first bound
    parameter, about a second of this process's time, on the path of every ingestion run."""
    digest = sql_literal(file_hash)
    outputs: dict[str, list[str]] = {}
    keys: dict[str, list[str]] = {}
    segments: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    for result in results:
        for kind, path in result.outputs.items():
            outputs.setdefault(kind, []).append(path)
        for kind, count in result.rows.items():
            rows[kind] = rows.get(kind, 0) + count
        for kind, path in result.keys.items():
            keys.setdefault(kind, []).append(path)
        for kind, path in result.segments.items():
            segments.setdefault(kind, []).append(path)
    # Each event's line (l) and key (k): from the small key files, or from the segments, which hold both.
    keyed = {kind: f"SELECT l, k FROM {read_block(paths, KEY_COLUMNS)}" for kind, paths in keys.items()} | {
        kind: f"""SELECT source_line AS l, {KINDS[kind].key} AS k
                  FROM read_parquet([{", ".join(map(sql_literal, paths))}])"""
        for kind, paths in segments.items()
    }
    quarantined = [result.quarantine_path for result in results if result.quarantine_path]
    with transaction(con):
        # Which events are new, decided on the keys alone: the first line of each key not yet stored.
        fresh_rows = [
            f"""SELECT '{kind}' AS kind, min(l) AS line_no FROM ({events}) m
                WHERE NOT EXISTS (SELECT 1 FROM raw.{KINDS[kind].table} r WHERE r.{KINDS[kind].key} = m.k)
                GROUP BY m.k"""
            for kind, events in keyed.items()
        ] or ["SELECT NULL::VARCHAR AS kind, NULL::BIGINT AS line_no WHERE false"]
        con.execute("CREATE OR REPLACE TEMP TABLE block_fresh AS " + " UNION ALL ".join(fresh_rows))
        fresh = dict(con.execute("SELECT kind, count(*) FROM block_fresh GROUP BY kind").fetchall())

        for kind, paths in outputs.items():
            selected = event_rows(kind, paths, source_file, file_hash, max_line_bytes)
            # Filter only when needed: an unfiltered insert goes straight to row groups.
            if fresh.get(kind, 0) != rows[kind]:
                selected += f" WHERE _fw_line IN (SELECT line_no FROM block_fresh WHERE kind = '{kind}')"
            con.execute(f"INSERT INTO raw.{KINDS[kind].table}_rows BY NAME {selected}")
        for result in results:
            for kind, segment in result.segments.items():
                register_segment(con, result, kind, segment, file_hash)
        for kind in segments:
            refresh_view(con, KINDS[kind].table)
        if quarantined:
            widest = max(result.widest_quarantine_row for result in results)
            con.execute(f"""
                INSERT INTO raw.quarantine
                    (source_file, file_hash, line_no, reason, raw_text, raw_bytes, quarantined_at)
                SELECT {sql_literal(source_file)}, {digest}, line_no, reason, raw_text, from_base64(raw_base64), now()
                FROM {read_block(quarantined, QUARANTINE_COLUMNS, widest)}
            """)
        # A mapped line may yield events of both kinds: new lines are counted apart from new events.
        events_new = sum(fresh.values())
        lines_new = con.execute("SELECT count(DISTINCT line_no) FROM block_fresh").fetchall()[0][0]
        valid = sum(result.valid_lines for result in results)
        advance_ledger(con, file_hash, results[-1].last_line, lines_new, valid - lines_new,
                       sum(result.quarantined for result in results), sum(result.blank_lines for result in results),
                       events_new, finished)


def _commit_or_quarantine(con: duckdb.DuckDBPyConnection, results: list[BlockResult], source_file: str,
                          file_hash: str, finished: bool, max_line_bytes: int) -> None:
    """Commit blocks; lines that DuckDB cannot store move to quarantine (see `rows.quarantine_unreadable`),
    and the blocks are committed again without them."""
    try:
        while True:
            try:
                return _commit_blocks(con, results, source_file, file_hash, finished, max_line_bytes)
            except duckdb.InvalidInputException as error:
                if not quarantine_unreadable(results, error):
                    raise
    finally:
        for result in results:
            for path in [*result.outputs.values(), *result.keys.values(), *result.segments.values(),
                         result.quarantine_path]:
                if path:
                    Path(path).unlink(missing_ok=True)


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
    workers: int | str = 0,
    storage: str = "auto",
) -> FileReport:
    """Ingest one file.

    `workers`: processes that validate blocks in parallel; 0 validates in this process, "auto" uses up to
    two for files over 64 MiB. Worker processes are spawned, so a script that asks for them must guard its
    entry point with `if __name__ == "__main__":`.
    `storage`: "rows" inserts the events into the DuckDB file, "segments" writes them as Parquet segments
    beside it (see `flywheel.warehouse`), "auto" chooses segments for files over 64 MiB.
    """
    started = time.perf_counter()
    ensure_raw_layer(con)
    path = path.resolve()
    size = path.stat().st_size
    if workers == "auto":
        workers = min(2, os.cpu_count() or 1) if size >= PARALLEL_MIN_BYTES else 0
    if storage not in ("auto", "rows", "segments"):
        raise ValueError(f"storage must be auto, rows or segments, not {storage!r}")
    segments = segments_folder(con) is not None and (
        storage == "segments" or (storage == "auto" and size >= SEGMENT_MIN_BYTES))
    # Workers start (spawn + imports: about a second) while this process hashes the file.
    executor = _executor(int(workers))
    threads, vacuum = con.execute(
        "SELECT current_setting('threads'), current_setting('max_vacuum_tasks')").fetchall()[0]
    if workers:
        # The workers keep the other cores busy; a block's insert gains nothing from a second DuckDB thread
        # (measured: the same time for a third more CPU), which would only take turns with them.
        con.execute("SET threads = 1")
    # Each block leaves a partly filled row group, which the checkpoint after the next block's commit would
    # merge with it, rewriting both: measured, a fifth more of this process's time for a file of interactions
    # only, and half as much again for some block sizes. The row groups stay as written.
    con.execute("SET max_vacuum_tasks = 0")
    try:
        return _ingest(con, path, size, started, executor, int(workers), int(threads), mapping=mapping,
                       format_name=format_name, batch_lines=batch_lines, max_line_bytes=max_line_bytes,
                       progress=progress, segments=segments)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET max_vacuum_tasks = {int(vacuum)}")


def _executor(workers: int) -> Executor:
    if not workers:
        return _InlineExecutor()
    # spawn, not fork: this process holds DuckDB's threads and file lock.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker)
    for _ in range(workers):
        pool.submit(os.getpid)  # start the workers now (their initializer imports the validation module)
    return pool


def _ingest(con: duckdb.DuckDBPyConnection, path: Path, size: int, started: float, executor: Executor, workers: int,
            threads: int, *, mapping: FieldMapping | None, format_name: str, batch_lines: int, max_line_bytes: int,
            progress: ProgressFn | None, segments: bool) -> FileReport:
    mapping = mapping or mapping_beside(path)
    # A mapped file is known by its content and its mapping: read again with a fixed mapping, its lines are
    # re-done (events already stored stay once: they are keyed), and quarantined lines it now takes are resolved.
    file_hash = content_hash(path) + (f".m{mapping.digest}" if mapping else "")
    # One ingestion at a time writes the raw layer (on a lake too, where nothing else would stop two): an event
    # is stored once because each writer sees what the one before it stored.
    with writing(con, "raw"):
        return _ingest_content(con, path, file_hash, size, started, executor, workers, threads, mapping=mapping,
                               format_name=format_name, batch_lines=batch_lines, max_line_bytes=max_line_bytes,
                               progress=progress, segments=segments)


def _ingest_content(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, size: int, started: float,
                    executor: Executor, workers: int, threads: int, *, mapping: FieldMapping | None,
                    format_name: str, batch_lines: int, max_line_bytes: int, progress: ProgressFn | None,
                    segments: bool) -> FileReport:
    remove_unregistered_segments(con)  # left by a writer that died; only the raw layer's writer may tell
    ledger = ledger_entry(con, file_hash)
    if ledger and ledger.status in FINAL:
        outcome = ledger.status if ledger.status != "done" else (
            "already_ingested" if ledger.first_path == str(path) else "copy_of_ingested")
        record_offer(con, path, file_hash, outcome, ledger.error)
        report = _report(con, path, file_hash, outcome, 0, time.perf_counter() - started)
        report.error = ledger.error
        return report
    fmt = "unknown"
    try:
        fmt = detect_format(path, mapping) if format_name == "auto" or mapping else format_name
        return _ingest_new(con, path, file_hash, size, fmt, ledger, started, executor, workers, threads,
                           mapping=mapping, batch_lines=batch_lines, max_line_bytes=max_line_bytes,
                           progress=progress, segments=segments)
    except (WarehouseBusyError, MappingError, KeyboardInterrupt):
        raise  # not the file's fault
    except Exception as error:
        reason = str(error) if isinstance(error, DamagedInput) else f"{type(error).__name__}: {error}"
        reason = reason.strip().splitlines()[0][:500] if reason.strip() else type(error).__name__
        status = record_failure(con, path, file_hash, size, fmt, reason)
        report = _report(con, path, file_hash, "failed", 0, time.perf_counter() - started)
        report.error = reason if status == "failed" else f"{reason} (the next run tries once more)"
        return report


def _ingest_new(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, size: int, fmt: str,
                ledger: LedgerEntry | None, started: float, executor: Executor, workers: int, threads: int, *,
                mapping: FieldMapping | None, batch_lines: int, max_line_bytes: int, progress: ProgressFn | None,
                segments: bool) -> FileReport:
    outcome, skip = ("resumed", ledger.lines_done) if ledger else ("ingested", 0)
    workdir = _workdir(storage_path(con))
    spec = BlockSpec(format=fmt, native_bytes=fmt == "native" and container_of(path) == "jsonl",
                     mapping_path=str(mapping.source) if mapping else None, max_line_bytes=max_line_bytes,
                     workdir=str(workdir), source_file=str(path), file_hash=file_hash, segments=segments)

    def record_start() -> None:
        if not ledger:
            open_ledger(con, path, file_hash, size, fmt)
        record_offer(con, path, file_hash, outcome)

    try:
        lines_done, damage = _load_lines(con, path, file_hash, spec, skip, batch_lines, progress, workers, executor,
                                         record_start, threads)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the shared parent goes too once no run uses it
            workdir.parent.rmdir()
    error = None
    if damage is not None:
        outcome, error = close_damaged(con, path, file_hash, str(damage)), str(damage)
    resolved = resolve_quarantine(con, file_hash)
    report = _report(con, path, file_hash, outcome, lines_done - skip, time.perf_counter() - started)
    report.error = error
    report.warnings = list(mapping.warnings) if mapping else []
    report.resolved = resolved
    return report


def _by_byte_ranges(path: Path) -> bool:
    """A plain file is cut by byte offsets, its lines read by the workers themselves."""
    return container_of(path) == "jsonl" and not is_gzip(path)


class _Damage:
    error: DamagedInput | None = None


def _until_damaged(blocks: Iterator[Block], damage: _Damage) -> Iterator[Block]:
    """The blocks up to where the file's container broke off (the damage is kept for the caller)."""
    try:
        yield from blocks
    except DamagedInput as error:
        damage.error = error


def _blocks(path: Path, skip: int, block_lines: int, workers: int = 0) -> Iterator[Block]:
    # The first block is a quarter of the others and the second the rest of one: the pipeline fills, and
    # progress shows, sooner, and the two are committed together (see `_load_lines`) as one block's worth.
    # (Two halves start the first commit sooner, but the main process then waits longer for the third.)
    first = max(1, block_lines // 4)
    sizes = itertools.chain([first, max(1, block_lines - first)], itertools.repeat(block_lines))
    if _by_byte_ranges(path):
        yield from _byte_range_blocks(path, skip, sizes, shared_by=workers)
        return
    lines: list[bytes] = []
    first, size = skip + 1, next(sizes)
    try:
        for line in read_lines(path, skip=skip):
            lines.append(line.raw)
            if len(lines) == size:
                yield Block(first, lines)
                first, lines, size = first + size, [], next(sizes)
    except DamagedInput:
        if lines:  # the lines read before the damage are as good as any
            yield Block(first, lines)
        raise
    if lines:
        yield Block(first, lines)


def _byte_range_blocks(path: Path, skip: int, sizes: Iterator[int], chunk: int = 8 << 20,
                       shared_by: int = 0) -> Iterator[Block]:
    """Cut a plain file into blocks of whole lines (of the given numbers of lines) by byte offsets: the
    workers read their own bytes, and this process only counts newlines, at memchr speed.

    `shared_by` workers: blocks shrink toward the end of the file (to a share of the lines left, estimated
    from the bytes left, down to an eighth of the size asked), so that the workers finish together instead
    of one idling while another validates a whole last block (measured: 2 s of 16 for a 912 MB file)."""
    cuts: list[tuple[int, int]] = []  # (lines before, byte offset) where a block starts
    target, line, offset = skip, 0, 0
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        while data := handle.read(chunk):
            position, newlines = 0, data.count(b"\n")
            while line + newlines >= target:
                for _ in range(target - line):
                    position = data.index(b"\n", position) + 1
                newlines -= target - line
                line = target
                cuts.append((line, offset + position))
                if len(cuts) == 2:
                    yield Block(cuts[0][0] + 1, path=str(path), start=cuts[0][1], end=cuts[1][1])
                    cuts.pop(0)
                wanted = next(sizes)
                if shared_by and line:
                    cut = offset + position
                    lines_left = (size - cut) * line / cut
                    wanted = min(wanted, max(wanted // 8, 1, math.ceil(lines_left / shared_by)))
                target += wanted
            line += newlines
            offset += len(data)
    if target == 0:  # an empty file
        return
    if cuts and cuts[0][1] < offset:  # the rest, including a last line without a newline
        yield Block(cuts[0][0] + 1, path=str(path), start=cuts[0][1], end=offset)


def _prefetched(items: Iterator[Block], depth: int) -> Iterator[Block]:
    """The items of an iterator produced in a thread of their own, at most `depth` ahead of their use."""
    ready: queue.Queue[tuple[Block | None, BaseException | None]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((None, None))
        except BaseException as error:  # handed to the consumer, which raises it
            ready.put((None, error))

    producer = threading.Thread(target=produce, name="ingest-cutter", daemon=True)
    producer.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is None:
                return
            yield item
    finally:
        stop.set()
        producer.join()


def _workdir(con_path: Path | None) -> Path:
    """A private folder for a run's intermediate files; folders left by crashed runs are removed."""
    root = (con_path.parent if con_path else Path(tempfile.gettempdir())) / ".ingest-tmp"
    private_folder(root)
    for stale in root.iterdir():
        pid = stale.name.split("-")[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


class _InlineExecutor(Executor):
    """Runs the work when asked, in this process: small files do not pay for starting workers."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


def _load_lines(con: duckdb.DuckDBPyConnection, path: Path, file_hash: str, spec: BlockSpec, skip: int,
                block_lines: int, progress: ProgressFn | None, workers: int, executor: Executor,
                record_start: Callable[[], None], threads: int) -> tuple[int, DamagedInput | None]:
    """Validate blocks (in parallel where worth it) and commit them in file order; return the last line read,
    and the damage that stopped the reading early, if any.

    `record_start` runs once the workers have their first blocks, before anything is committed. While the
    workers run, blocks are committed one at a time with one DuckDB thread; once the last block is validated,
    those left are committed together with all of DuckDB's `threads` (a single insert of several blocks is
    what DuckDB spreads over cores). Memory stays bounded whatever the file's size: blocks of a plain file
    are byte ranges that each worker reads itself (a few in flight, their results in files on disk); blocks
    of a compressed or columnar file hold their lines, and at most `workers + 1` of them are in flight.
    """
    last_line, done = skip, False
    in_flight: deque[Future[BlockResult]] = deque()

    def commit(results: list[BlockResult], finished: bool) -> None:
        nonlocal last_line, done
        done = finished
        _commit_or_quarantine(con, results, str(path), file_hash, finished, spec.max_line_bytes)
        last_line = results[-1].last_line
        if progress:
            progress(results[-1].last_line - results[0].first_line + 1)

    def oldest() -> list[BlockResult]:
        # An insert of fewer events (of a kind) than a DuckDB row group goes through the write-ahead log,
        # and is written again at the checkpoint (measured: a second for the small first block, with
        # vacuuming): such a block is committed with the next.
        group = [in_flight.popleft().result()]
        while in_flight and max(sum(r.rows.get(kind, 0) for r in group) for kind in KINDS) < _DUCKDB_ROW_GROUP_ROWS:
            group.append(in_flight.popleft().result())
        return group

    damage = _Damage()
    blocks = _until_damaged(_blocks(path, skip, block_lines, workers), damage)
    if not workers:
        ahead = 1  # inline, a block is validated when submitted
    elif _by_byte_ranges(path):
        ahead = workers + 3
        # The file is cut in a thread of its own: counting newlines (half a second a GB) then runs beside
        # DuckDB's inserts instead of between them.
        blocks = _prefetched(blocks, ahead)
    else:
        ahead = workers
    for block in itertools.islice(blocks, workers):
        in_flight.append(executor.submit(prepare_block, block, spec))
    record_start()
    for block in blocks:
        in_flight.append(executor.submit(prepare_block, block, spec))
        if len(in_flight) > ahead:
            commit(oldest(), finished=False)
    while in_flight:
        if workers and len(in_flight) > 1 and all(future.done() for future in in_flight):
            con.execute(f"SET threads = {threads:d}")
            commit([future.result() for future in in_flight], finished=True)
            in_flight.clear()
        else:
            commit(oldest(), finished=not in_flight)
    if not done:  # nothing (more) to read: mark the file done
        _commit_blocks(con, [BlockResult(last_line + 1, last_line)], str(path), file_hash, True)
    return last_line, damage.error


def _report(con, path: Path, file_hash: str, outcome: str, new_lines: int, seconds: float) -> FileReport:
    (fmt, size, done, ingested, quarantined, duplicate, blank, events) = ledger_counts(con, file_hash)
    examples = [f"{path}:{line_no}: {reason}" for line_no, reason in quarantined_lines(con, file_hash)]
    rows = con.execute(f"SELECT count(*) FROM raw.quarantine WHERE file_hash = {sql_literal(file_hash)}"
                       ).fetchall()[0][0]
    return FileReport(str(path), file_hash, fmt, outcome, done, ingested, quarantined, duplicate, blank, events,
                      new_lines, seconds, size, examples, quarantine_rows=rows)
