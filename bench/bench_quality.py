"""The whole quality layer on simulated traffic: staging (with redaction), expectations, dedup, intermediate.

    uv run python bench/bench_quality.py --rows 1000000

Ingests the traffic first (timed apart), then the SQL models in dependency order over every day at once
(staging redacts all text through the Python UDF), the Great Expectations suites, and near-duplicate
clustering over all days. Prints the wall time of each stage, the total, and peak RSS (issue 3 asks for
these figures; there is no external baseline for the whole layer).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    from flywheel import reports, warehouse
    from flywheel.days import DayRange
    from flywheel.dedup import MinHasher, build_clusters
    from flywheel.ingest import ingest_file
    from flywheel.quality import check_relation, has_suite
    from flywheel.reference import write_model_prices
    from flywheel.settings import Home
    from flywheel.simulate import simulate
    from flywheel.sqlmodels import load_models, materialize

    with tempfile.TemporaryDirectory(prefix="flywheel-quality-") as tmp:
        source = Path(tmp) / "traffic.jsonl"
        simulate(source, args.rows, seed=21)
        timings: dict[str, float] = defaultdict(float)
        with warehouse.session(Home(Path(tmp))) as con:
            started = time.perf_counter()
            report = ingest_file(con, source, workers="auto")
            timings["ingest (not part of the layer)"] = time.perf_counter() - started
            layer_started = time.perf_counter()
            write_model_prices(con)
            days = [d for (d,) in con.execute("SELECT DISTINCT event_date FROM raw.interactions ORDER BY 1").fetchall()]
            every_day = DayRange(days[0], days[-1])
            failures = 0
            for model in load_models():
                if model.relation == "intermediate.int_cluster_members":
                    t = time.perf_counter()
                    build_clusters(con, MinHasher())
                    timings["dedup (MinHash + LSH, all days)"] += time.perf_counter() - t
                t = time.perf_counter()
                materialize(con, model, every_day if model.materialized == "incremental" else None)
                stage = "staging (incl. redaction)" if model.layer == "staging" else "intermediate"
                timings[stage] += time.perf_counter() - t
                print(f"{model.relation}: {time.perf_counter() - t:.1f}s, peak RSS "
                      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB", file=sys.stderr)
                if has_suite(model.relation):
                    t = time.perf_counter()
                    outcome = check_relation(con, model.relation, every_day if model.materialized == "incremental"
                                             else None)
                    failures += len(outcome.failures("critical"))
                    timings["expectations (Great Expectations)"] += time.perf_counter() - t
            layer = time.perf_counter() - layer_started
            redactions = reports.redaction_totals(con)
            clusters = con.execute("SELECT count(DISTINCT cluster_id), count(*) FROM dedup.clusters").fetchall()[0]
        interactions = report.lines_ingested
        print(f"{args.rows:,} simulated interactions ({report.lines_read:,} lines), {len(days)} days")
        for stage, seconds in timings.items():
            print(f"  {stage:42s} {seconds:8.1f} s")
        print(f"quality layer total: {layer:.1f} s ({interactions / layer:,.0f} interactions/s); "
              f"critical failures: {failures}; clusters: {clusters[0]:,} for {clusters[1]:,} interactions")
        print(f"redactions: {dict(redactions)}")
        print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB (this process), "
              f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:,.0f} MB (largest ingest worker)")


if __name__ == "__main__":
    main()
