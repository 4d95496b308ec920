"""A full daily cycle on a million interactions, stage by stage, and the same cycle again with no new data.

    uv run python bench/bench_cycle.py                      # 1,000,000 interactions over 7 days
    uv run python bench/bench_cycle.py --rows 100000 --labeling
    uv run python bench/bench_cycle.py --profile scale --workers 2   # DuckLake + Dagster on PostgreSQL, Celery,
                                                                     # beside the embedded profile on the same rows
    uv run python bench/bench_cycle.py --rows 10000000 --cache ~/.cache/flywheel-bench   # and 1M as baseline

Simulates `--rows` interactions into a new FLYWHEEL_HOME, then runs the cycle's stages as a user would, each
as its own `flywheel` command (so each stage's wall time and peak memory are its own): ingest, build (staging,
quality checks, near-duplicates, intermediate), with `--labeling` the labeling queue pushed to the local
Argilla (capped by the budget; the first run installs the server), and publish (signals, splits, marts,
checks, releases). Then the same stages again with nothing new: the baseline is the full run, and the re-run
should take under 5% of it. Targets (issue 11): the full cycle under 3 minutes on 2 cores. With
`--profile scale` the same stages run on the scale-out profile (a new PostgreSQL database on the server of
FLYWHEEL_POSTGRES_URL, `--workers` Celery workers on FLYWHEEL_BROKER_URL, whose memory counts with each stage),
after the same cycle on the embedded profile, which is its baseline.
Past a million rows the same cycle first runs on 1M (`--baseline-rows`) and each stage's time per million rows
is compared (issue 13: 10M under 30 minutes, all processes together under 4 GB, no stage growing faster than
linearly). Prints a table, then the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _stage(args: list[str], env: dict[str, str], beside: list[int] | None = None) -> tuple[float, float]:
    """Run one `flywheel` command; its wall time (s) and peak resident memory (MB, with its children and the
    processes `beside` it: the scale profile's workers, which run its steps)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    watched = [psutil.Process(process.pid), *(psutil.Process(pid) for pid in beside or [])]

    def watch() -> None:
        nonlocal peak
        while process.poll() is None:
            rss = 0
            for root in watched:
                with suppress(psutil.Error):
                    rss += root.memory_info().rss + sum(
                        c.memory_info().rss for c in root.children(recursive=True)
                        if c.name() != "argilla" and "argilla" not in " ".join(c.cmdline()[:2]))
            peak = max(peak, rss)
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    _, errors = process.communicate()
    thread.join()
    if process.returncode:
        raise SystemExit(f"flywheel {' '.join(args)} failed:\n{errors[-3000:]}")
    return time.perf_counter() - started, peak / 1e6


def _start_workers(home, count: int) -> list[subprocess.Popen]:
    """Celery workers for the scale profile, up once they answer; their memory is counted in no stage."""
    from pipelines.scale import worker_process, workers_answering

    started = [worker_process(home, name=f"bench-{n}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for n in range(count)]
    while len(workers_answering(home, timeout_s=1)) < count:
        time.sleep(1)
    return started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--baseline-rows", type=int, default=None,
                        help="Also run the cycle on this many rows first and compare each stage's time per million "
                             "rows (default: 1,000,000 when --rows is larger, else none).")
    parser.add_argument("--cache", type=Path, default=None,
                        help="Keep the simulated traffic in this folder and reuse it (10M rows take ~10 minutes and "
                             "~9 GB to simulate); by default it is simulated into the run's temporary folder.")
    parser.add_argument("--labeling", action="store_true", help="Queue and push the labeling budget to Argilla.")
    parser.add_argument("--profile", choices=["embedded", "scale"], default="embedded",
                        help="scale: the lake and Dagster in a new PostgreSQL database (FLYWHEEL_POSTGRES_URL's "
                             "server), steps on --workers Celery workers (FLYWHEEL_BROKER_URL).")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    baseline_rows = args.baseline_rows if args.baseline_rows is not None else (
        1_000_000 if args.rows > 1_000_000 and args.profile == "embedded" else 0)

    # (profile, rows) of each cycle, the measured one last: the embedded profile on the same rows is the scale
    # profile's baseline, a million rows the embedded profile's
    cycles = [("embedded", args.rows), ("scale", args.rows)] if args.profile == "scale" else [
        *([("embedded", baseline_rows)] if baseline_rows else []), ("embedded", args.rows)]
    results = {}
    for profile, rows in cycles:
        with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp, _profile(profile) as variables:
            results[profile, rows] = _cycle(args, rows, Path(tmp), variables)
    _report(args, results, baseline_rows)


@contextmanager
def _profile(profile: str) -> Iterator[dict[str, str]]:
    """The environment of the chosen profile; for scale, a PostgreSQL database of the benchmark's own."""
    if profile == "embedded":
        yield {"FLYWHEEL_PROFILE": "embedded"}
        return
    import uuid

    import psycopg2

    from flywheel.settings import Home

    server = Home.from_env(".").scale.postgres_url.rsplit("/", 1)[0]
    name = f"flywheel_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{server}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"FLYWHEEL_PROFILE": "scale", "FLYWHEEL_POSTGRES_URL": f"{server}/{name}"}
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _traffic(args: argparse.Namespace, rows: int, landing: Path) -> None:
    """The simulated logs in the landing folder: simulated there, or linked from --cache (simulated there once
    per size and day, so that every run of a day reads the same lines)."""
    from flywheel.simulate import simulate

    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    target = landing / "traffic.jsonl"
    source = target if args.cache is None else (
        args.cache / f"traffic-{rows}-{args.days}d-{end:%Y%m%d}.jsonl")
    if not source.exists():
        print(f"simulating {rows:,} interactions ...", file=sys.stderr)
        simulate(source, rows, days=args.days, seed=1, end=end)
    if source != target:
        try:
            os.link(source, target)
        except OSError:  # another file system
            shutil.copyfile(source, target)


def _cycle(args: argparse.Namespace, rows: int, tmp: Path, variables: dict[str, str]) -> dict:
    """One full cycle and its re-run on `rows` simulated interactions: each stage's wall time and peak memory."""
    from flywheel.settings import Home

    # the settings of this shell (FLYWHEEL_DUCKDB_MEMORY, ...) with the profile's
    home = Home.from_env(tmp / "home", env={**os.environ, **variables}).ensure()
    _traffic(args, rows, home.landing)
    env = {**os.environ, **home.environment(), "PYTHONWARNINGS": "ignore"}
    workers = _start_workers(home, args.workers) if home.lake else []
    try:
        figures, one_command, one_command_peak = _stages(args, rows, env, workers)
    finally:  # a worker left running would take the next run's tasks with this run's settings
        for worker in workers:
            worker.terminate()
            worker.wait(60)
    released = {p.parent.parent.name for p in home.releases.glob("*/latest/manifest.json")}
    sizes = sum(f.stat().st_size for f in home.releases.rglob("*") if f.is_file() and not f.is_symlink())
    names = [name for name in figures["full"] if not name.endswith("_peak_mb")]
    return {"names": names, "figures": figures, "workers": len(workers),
            "one_command": one_command, "one_command_peak": one_command_peak,
            "released": len(released), "release_mb": sizes / 1e6}


def _stages(args: argparse.Namespace, rows: int, env: dict[str, str], workers: list[subprocess.Popen]
            ) -> tuple[dict[str, dict[str, float]], float, float]:
    stages = [("ingest", ["ingest"]), ("build", ["build"])]
    if args.labeling:
        stages.append(("labeling", ["label", "queue"]))
    stages.append(("publish", ["publish"]))
    figures: dict[str, dict[str, float]] = {"full": {}, "rerun": {}}
    for run in ("full", "rerun"):
        for name, command in stages:
            wall, peak = _stage(command, env, [w.pid for w in workers])
            figures[run][name] = wall
            figures[run][f"{name}_peak_mb"] = peak
            print(f"{rows:,} rows, {run} {name}: {wall:.1f} s, {peak:,.0f} MB", file=sys.stderr)
    # The same re-run as the one command a user schedules: the main job (ingest, build, publish).
    one_command, one_command_peak = _stage(["run", "--rows", "0", *([] if args.labeling else ["--no-labeling"])],
                                           env, [w.pid for w in workers])
    if args.labeling:
        _stage(["argilla", "down"], env)
    return figures, one_command, one_command_peak


def _report(args: argparse.Namespace, results: dict[tuple[str, int], dict], baseline_rows: int) -> None:
    rows = args.rows
    result = results[args.profile, rows]
    names, figures = result["names"], result["figures"]
    full = sum(figures["full"][n] for n in names)
    rerun = sum(figures["rerun"][n] for n in names)
    peak = max(v for f in figures.values() for k, v in f.items() if k.endswith("_peak_mb"))
    print(f"{args.profile} profile, {rows:,} interactions")
    print(f"{'stage':10s} {'full s':>8s} {'peak MB':>8s} {'re-run s':>9s} {'peak MB':>8s}")
    for name in names:
        print(f"{name:10s} {figures['full'][name]:8.1f} {figures['full'][name + '_peak_mb']:8,.0f} "
              f"{figures['rerun'][name]:9.1f} {figures['rerun'][name + '_peak_mb']:8,.0f}")
    print(f"{'total':10s} {full:8.1f} {'':8s} {rerun:9.1f}")
    print(f"re-run as one command (flywheel run --rows 0): {result['one_command']:.1f} s, "
          f"{result['one_command_peak']:,.0f} MB")
    print(f"{rows:,} interactions: the full cycle in {full:.1f} s, peak {peak:,.0f} MB of all processes together; "
          f"the re-run with no new data {rerun:.1f} s = {100 * rerun / full:.1f}% of the full run as {len(names)} "
          f"commands, {result['one_command']:.1f} s = {100 * result['one_command'] / full:.1f}% as one "
          f"`flywheel run` (target < 5%); {result['released']} datasets released, {result['release_mb']:.1f} MB")
    per_million: dict[str, dict[str, float]] = {}
    growth: dict[str, float] = {}
    if baseline_rows:
        base = results["embedded", baseline_rows]["figures"]["full"]
        print(f"\n{'stage':10s} {'s/M @' + f'{baseline_rows / 1e6:g}M':>10s} {'s/M @' + f'{rows / 1e6:g}M':>10s} "
              f"{'growth':>7s}  (time per million rows; growth > 1 = faster than linear)")
        for name in [*names, "total"]:
            at_base = (sum(base[n] for n in names) if name == "total" else base[name]) / (baseline_rows / 1e6)
            at_rows = (full if name == "total" else figures["full"][name]) / (rows / 1e6)
            per_million[name] = {str(baseline_rows): round(at_base, 2), str(rows): round(at_rows, 2)}
            growth[name] = round(at_rows / at_base, 3)
            print(f"{name:10s} {at_base:10.2f} {at_rows:10.2f} {growth[name]:7.3f}")
    beside: dict[str, dict[str, float]] = {}
    if args.profile == "scale":
        embedded = results["embedded", rows]["figures"]["full"]
        print(f"\n{'stage':10s} {'embedded s':>11s} {'peak MB':>8s} {'scale s':>8s} {'peak MB':>8s} {'ratio':>6s}  "
              f"(the same rows on both profiles; scale with {result['workers']} workers, their memory included)")
        for name in [*names, "total"]:
            e_s = sum(embedded[n] for n in names) if name == "total" else embedded[name]
            s_s = full if name == "total" else figures["full"][name]
            e_mb = max(embedded[f"{n}_peak_mb"] for n in names) if name == "total" else embedded[f"{name}_peak_mb"]
            s_mb = max(figures["full"][f"{n}_peak_mb"] for n in names) if name == "total" \
                else figures["full"][f"{name}_peak_mb"]
            beside[name] = {"embedded_s": round(e_s, 1), "embedded_peak_mb": round(e_mb),
                            "scale_s": round(s_s, 1), "scale_peak_mb": round(s_mb), "ratio": round(s_s / e_s, 3)}
            print(f"{name:10s} {e_s:11.1f} {e_mb:8,.0f} {s_s:8.1f} {s_mb:8,.0f} {s_s / e_s:6.2f}")
    print(json.dumps({
        "benchmark": "cycle", "profile": args.profile, "workers": result["workers"], "rows": rows,
        "days": args.days, "labeling": args.labeling,
        "full_s": round(full, 1), "rerun_s": round(rerun, 1), "rerun_ratio": round(rerun / full, 4),
        "rerun_one_command_s": round(result["one_command"], 1),
        "rerun_one_command_ratio": round(result["one_command"] / full, 4),
        "peak_mb": round(peak), "stages": {run: {k: round(v, 1) for k, v in f.items()} for run, f in figures.items()},
        "baseline_rows": baseline_rows or None, "seconds_per_million": per_million or None,
        "growth_over_baseline": growth or None, "beside_embedded": beside or None,
        "datasets_released": result["released"], "release_mb": round(result["release_mb"], 1),
    }))


if __name__ == "__main__":
    main()
