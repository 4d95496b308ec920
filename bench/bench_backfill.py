"""A year of history built from scratch, against the same traffic in one day.

    uv run python bench/bench_backfill.py                 # 365 days x 1,000 interactions
    uv run python bench/bench_backfill.py --days 30 --per-day 500

Simulates `--days` days of `--per-day` interactions each, ingests them (timed apart), then builds every day
through Dagster exactly as `flywheel build` does (real materializations of the day partitions, in as few runs
as the days allow: one). The baseline is the same number of interactions on a single day, built the same way
in the same run of this script. Targets (issue 14): the year under 2 minutes, and its time per interaction
within 2x of the single day's. Prints a table, then the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _build_from_scratch(root: Path, rows: int, days: int, seed: int) -> dict[str, float]:
    from flywheel import warehouse
    from flywheel.ingest import ingest_file
    from flywheel.settings import Home
    from flywheel.simulate import simulate
    from pipelines.launch import build

    home = Home(root).ensure()
    source = root / "traffic.jsonl"
    # Ends at midnight, so `days` days of traffic fall on exactly `days` dates.
    simulate(source, rows, days=days, seed=seed, end=datetime(2026, 6, 1, tzinfo=UTC))
    started = time.perf_counter()
    with warehouse.session(home) as con:
        ingest_file(con, source, workers="auto")
        interactions = con.execute("SELECT count(*) FROM raw.interactions").fetchall()[0][0]
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    result = build(home)
    build_s = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"the build failed: see {home.dagster_home}")
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and f != source)
    return {"interactions": interactions, "days": result.days_built, "runs": len(result.runs),
            "ingest_s": ingest_s, "build_s": build_s, "input_mb": source.stat().st_size / 1e6,
            "state_mb": size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rows = args.days * args.per_day
    figures = {}
    for name, days in (("history", args.days), ("one_day", 1)):
        with tempfile.TemporaryDirectory(prefix=f"flywheel-backfill-{name}-") as tmp:
            os.environ.pop("DAGSTER_HOME", None)
            figures[name] = _build_from_scratch(Path(tmp), rows, days, args.seed)
            print(f"{name}: {figures[name]}", file=sys.stderr)
    history, one_day = figures["history"], figures["one_day"]
    per_interaction = {k: v["build_s"] / max(1, v["interactions"]) * 1e6 for k, v in figures.items()}
    ratio = per_interaction["history"] / per_interaction["one_day"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'':10s} {'interactions':>12s} {'days':>5s} {'runs':>4s} {'ingest s':>9s} {'build s':>8s} "
          f"{'us/interaction':>15s}")
    for name, f in figures.items():
        print(f"{name:10s} {f['interactions']:12,d} {f['days']:5d} {f['runs']:4d} {f['ingest_s']:9.1f} "
              f"{f['build_s']:8.1f} {per_interaction[name]:15.1f}")
    print(f"year built in {history['build_s']:.1f} s (target < 120 s); time per interaction {ratio:.2f}x the single "
          f"day's (target <= 2x); peak RSS {peak_mb:,.0f} MB")
    print(json.dumps({"benchmark": "backfill", "days": args.days, "per_day": args.per_day,
                      "history_build_s": round(history["build_s"], 2),
                      "history_ingest_s": round(history["ingest_s"], 2),
                      "one_day_build_s": round(one_day["build_s"], 2), "runs": history["runs"],
                      "ratio_per_interaction_vs_one_day": round(ratio, 3), "peak_rss_mb": round(peak_mb),
                      "input_mb": round(history["input_mb"], 1), "state_mb": round(history["state_mb"], 1)}))


if __name__ == "__main__":
    main()
