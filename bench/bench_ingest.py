"""Ingestion throughput and memory against DuckDB's bare JSON reader, on the same file, in the same run.

    uv run python bench/bench_ingest.py --rows 1000000

Baseline: `CREATE TABLE t AS SELECT * FROM read_json_auto(file, ignore_errors=true)` into a fresh DuckDB file
(no validation, no quarantine, no dedup, no ledger). Ours: `flywheel ingest` of the same file into a
fresh warehouse (a file this large: validated by two worker processes, which also write its events as the raw
layer's Parquet segments; see `flywheel/warehouse.py`). Each runs in its own process so that peak RSS is its
own.
Targets (issue 2): ours >= 50% of the baseline's throughput; peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _child(kind: str, source: str, workdir: str) -> None:
    """Run one measurement in this process and print its figures as JSON."""
    import duckdb

    started = time.perf_counter()
    if kind == "baseline":
        con = duckdb.connect(str(Path(workdir) / "baseline.duckdb"))
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_json_auto('{source}', ignore_errors=true)")
        rows = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
        con.close()
    else:
        from flywheel import warehouse
        from flywheel.ingest import ingest_file
        from flywheel.settings import Home

        with warehouse.session(Home(Path(workdir))) as con:
            report = ingest_file(con, Path(source), workers="auto")
            assert report.reconciles, report
            rows = report.lines_read
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest worker process
    # CPU time of this process and its workers: on a machine with few cores, what the wall time comes down to.
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": peak_mb, "worker_rss_mb": worker_mb,
                      "cpu_seconds": cpu}))


def _measure(kind: str, source: Path, workdir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(source), str(workdir)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="simulated interactions (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternated; medians compared (3)")
    parser.add_argument("--keep", type=Path, help="folder to keep the generated file in (reused when present)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    from flywheel.simulate import simulate

    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / f"traffic-{args.rows}.jsonl"
        if not source.exists():
            started = time.perf_counter()
            counts = simulate(source, args.rows, seed=42)
            print(f"simulated {counts} in {time.perf_counter() - started:.1f}s")
        size_mb = source.stat().st_size / 1e6
        lines = sum(1 for _ in source.open("rb"))
        print(f"input: {source.name}, {lines:,} lines, {size_mb:,.0f} MB")
        runs: dict[str, list[dict]] = {"baseline": [], "flywheel": []}
        # Alternated, so that a slow spell of a shared machine falls on both; the medians are compared.
        for attempt in range(1, args.repeat + 1):
            for kind in runs:
                workdir = Path(tempfile.mkdtemp(dir=tmp))
                figures = _measure(kind, source, workdir)
                shutil.rmtree(workdir, ignore_errors=True)
                runs[kind].append(figures)
                print(f"  run {attempt}: {kind:9s} {figures['seconds']:6.2f} s  CPU {figures['cpu_seconds']:5.1f} s")
        results = {}
        for kind, measured in runs.items():
            figures = results[kind] = {
                "seconds": statistics.median(f["seconds"] for f in measured),
                "cpu_seconds": statistics.median(f["cpu_seconds"] for f in measured),
                "peak_rss_mb": max(f["peak_rss_mb"] for f in measured),
                "worker_rss_mb": max(f["worker_rss_mb"] for f in measured),
            }
            figures["lines_per_s"] = lines / figures["seconds"]
            figures["mb_per_s"] = size_mb / figures["seconds"]
            # Worst case at one moment: the main process plus two workers each at their own peak.
            figures["total_rss_mb"] = figures["peak_rss_mb"] + 2 * figures["worker_rss_mb"]
            print(f"{kind:9s} {figures['seconds']:7.2f} s  {figures['lines_per_s']:>10,.0f} lines/s  "
                  f"{figures['mb_per_s']:6.1f} MB/s  CPU {figures['cpu_seconds']:5.1f} s  "
                  f"peak RSS {figures['peak_rss_mb']:,.0f} MB (+ workers {figures['worker_rss_mb']:,.0f} MB each)"
                  f"  [median of {len(measured)}]")
        ratio = results["flywheel"]["lines_per_s"] / results["baseline"]["lines_per_s"]
        print(f"ratio flywheel/baseline throughput: {ratio:.2f} (target >= 0.50); "
              f"flywheel peak RSS, main + 2 workers at their peaks: {results['flywheel']['total_rss_mb']:,.0f} MB "
              "(target < 2048)")


if __name__ == "__main__":
    main()
