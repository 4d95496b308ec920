"""A full daily cycle on a million interactions, stage by stage, and the same cycle again with no new data.

    uv run python bench/bench_cycle.py                      # 1,000,000 interactions over 7 days
    uv run python bench/bench_cycle.py --rows 100000 --labeling

Simulates `--rows` interactions into a new FLYWHEEL_HOME, then runs the cycle's stages as a user would, each
as its own `flywheel` command (so each stage's wall time and peak memory are its own): ingest, build (staging,
quality checks, near-duplicates, intermediate), with `--labeling` the labeling queue pushed to the local
Argilla (capped by the budget; the first run installs the server), and publish (signals, splits, marts,
checks, releases). Then the same stages again with nothing new: the baseline is the full run, and the re-run
should take under 5% of it. Targets (issue 11): the full cycle under 3 minutes on 2 cores. Prints a table,
then the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _stage(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one `flywheel` command; its wall time (s) and peak resident memory (MB, with its children)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, watched = 0, psutil.Process(process.pid)

    def watch() -> None:
        nonlocal peak
        while process.poll() is None:
            try:
                rss = watched.memory_info().rss + sum(
                    c.memory_info().rss for c in watched.children(recursive=True)
                    if c.name() != "argilla" and "argilla" not in " ".join(c.cmdline()[:2]))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    _, errors = process.communicate()
    thread.join()
    if process.returncode:
        raise SystemExit(f"flywheel {' '.join(args)} failed:\n{errors[-3000:]}")
    return time.perf_counter() - started, peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--labeling", action="store_true", help="Queue and push the labeling budget to Argilla.")
    args = parser.parse_args()

    from flywheel.settings import Home
    from flywheel.simulate import simulate

    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp:
        home = Home(Path(tmp) / "home").ensure()
        source = home.landing / "traffic.jsonl"
        print(f"simulating {args.rows:,} interactions ...", file=sys.stderr)
        simulate(source, args.rows, days=args.days, seed=1)
        env = {**os.environ, "FLYWHEEL_HOME": str(home.root), "PYTHONWARNINGS": "ignore"}
        stages = [("ingest", ["ingest"]), ("build", ["build"])]
        if args.labeling:
            stages.append(("labeling", ["label", "queue"]))
        stages.append(("publish", ["publish"]))
        figures: dict[str, dict[str, float]] = {"full": {}, "rerun": {}}
        for run in ("full", "rerun"):
            for name, command in stages:
                wall, peak = _stage(command, env)
                figures[run][name] = wall
                figures[run][f"{name}_peak_mb"] = peak
                print(f"{run} {name}: {wall:.1f} s, {peak:,.0f} MB", file=sys.stderr)
        # The same re-run as the one command a user schedules: the main job (ingest, build, publish).
        one_command, one_command_peak = _stage(["run", "--rows", "0", *([] if args.labeling else ["--no-labeling"])],
                                               env)
        if args.labeling:
            _stage(["argilla", "down"], env)
        released = {p.parent.parent.name for p in home.releases.glob("*/latest/manifest.json")}
        sizes = sum(f.stat().st_size for f in home.releases.rglob("*") if f.is_file() and not f.is_symlink())

    names = [name for name, _ in stages]
    full = sum(figures["full"][n] for n in names)
    rerun = sum(figures["rerun"][n] for n in names)
    print(f"{'stage':10s} {'full s':>8s} {'peak MB':>8s} {'re-run s':>9s} {'peak MB':>8s}")
    for name in names:
        print(f"{name:10s} {figures['full'][name]:8.1f} {figures['full'][name + '_peak_mb']:8,.0f} "
              f"{figures['rerun'][name]:9.1f} {figures['rerun'][name + '_peak_mb']:8,.0f}")
    print(f"{'total':10s} {full:8.1f} {'':8s} {rerun:9.1f}")
    print(f"re-run as one command (flywheel run --rows 0): {one_command:.1f} s, {one_command_peak:,.0f} MB")
    print(f"{args.rows:,} interactions: the full cycle in {full:.1f} s (target < 180 s); the re-run with no new data "
          f"{rerun:.1f} s = {100 * rerun / full:.1f}% of the full run as {len(names)} commands, {one_command:.1f} s = "
          f"{100 * one_command / full:.1f}% as one `flywheel run` (target < 5%); {len(released)} datasets "
          f"released, {sizes / 1e6:.1f} MB")
    print(json.dumps({
        "benchmark": "cycle", "rows": args.rows, "days": args.days, "labeling": args.labeling,
        "full_s": round(full, 1), "rerun_s": round(rerun, 1), "rerun_ratio": round(rerun / full, 4),
        "rerun_one_command_s": round(one_command, 1), "rerun_one_command_ratio": round(one_command / full, 4),
        "stages": {run: {k: round(v, 1) for k, v in f.items()} for run, f in figures.items()},
        "datasets_released": len(released), "release_mb": round(sizes / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
