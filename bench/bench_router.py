"""Does the data pay off? Router and eval-set figures on any log file, end to end through the product.

    uv run python bench/bench_router.py                                  # the shared GSM8K sample
    uv run python bench/bench_router.py --data my_logs.jsonl --mapping my_mapping.yaml

Ingests the file (with its mapping), publishes the releases, trains the router on router_examples' train split
and evaluates it on the test split (costs from the price table and the texts' token counts), then reports the
eval set's leave-one-model-out fidelity. Baselines measured in the same run: the best single model or random mix
of models (the hull) for the router, and a uniform random sample of the same size for the eval set. Targets
(issue 12): the router's AIQ gain over the hull > 0 with the bootstrap interval's low end above zero;
>= 99% of the most accurate model's accuracy at <= 25% of its cost; eval set with <= 5% of the prompts: mean
absolute error <= 0.02 and Spearman >= 0.95. Also the production decision latency (p50/p99). Prints a table,
then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GSM8K = REPO.parent / "shared" / "data" / "zeroeval_gsm8k.jsonl.gz"


def uniform_baseline(examples, pool: np.ndarray, share: float, draws: int = 50) -> tuple[float, float]:
    """Mean absolute error and Spearman of a uniform random sample of the same size, averaged over draws."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    size = max(1, round(share * len(examples.clusters)))
    candidates = np.nonzero(pool)[0]
    logged = np.nanmean(examples.quality, axis=0)
    maes, rhos = [], []
    for _ in range(draws):
        pick = rng.choice(candidates, min(size, len(candidates)), replace=False)
        estimated = np.nanmean(examples.quality[pick], axis=0)
        maes.append(float(np.nanmean(np.abs(estimated - logged))))
        rhos.append(float(spearmanr(estimated, logged).statistic))
    return float(np.mean(maes)), float(np.mean(rhos))


def over_orders(examples, pool: np.ndarray, share: float, orders: int = 20) -> dict[str, float]:
    """The eval set's fidelity averaged over `orders` hash orders (one order is one draw of a random set), and its
    ceiling: a set chosen once for all models with every model's outcomes known, the estimated one's included.
    Where the ceiling is far from a target, no choice of items reaches it at this share."""
    from scipy.stats import spearmanr

    from flywheel import evalsets
    from flywheel.eval_report import summary

    logged = np.nanmean(examples.quality, axis=0)
    size = max(1, round(share * len(examples.clusters)))
    maes, rhos, ceiling = [], [], []
    for order in range(orders):
        keys = [f"{order}|{c}" for c in examples.clusters]
        figures = summary(evalsets.leave_one_model_out(examples.quality, examples.good, examples.apps, keys,
                                                       examples.models, pool, share))
        maes.append(figures["eval_mae"])
        rhos.append(figures["eval_spearman"])
        common = evalsets.choose(examples.good, examples.apps, keys, pool, size)
        estimated = [evalsets.estimate(common, examples.quality[:, m],
                                       evalsets.ease(np.delete(examples.good, m, axis=1)))
                     for m in range(len(examples.models))]
        ceiling.append(float(spearmanr(estimated, logged).statistic))
    return {"eval_mae_mean_over_orders": float(np.mean(maes)), "eval_spearman_mean_over_orders": float(np.mean(rhos)),
            "eval_spearman_p10_over_orders": float(np.quantile(rhos, 0.1)),
            "eval_spearman_ceiling": float(np.mean(ceiling))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=GSM8K)
    parser.add_argument("--mapping", type=Path, default=REPO / "schemas" / "mappings" / "zeroeval.yaml")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"no data at {args.data} (give --data and --mapping)")

    from flywheel import eval_report, warehouse
    from flywheel.curation import load_rules
    from flywheel.ingest import ingest_file, load_mapping
    from flywheel.route import Router
    from flywheel.router.examples import read_examples
    from flywheel.router.store import evaluate_router, train
    from flywheel.settings import Home
    from pipelines.launch import publish

    home = Home(Path(tempfile.mkdtemp(prefix="bench-router-"))).ensure()
    timings = {}
    started = time.perf_counter()
    with warehouse.session(home) as con:
        ingest_file(con, args.data, mapping=load_mapping(args.mapping) if args.mapping else None)
    timings["ingest_s"] = time.perf_counter() - started
    started = time.perf_counter()
    assert publish(home).success
    timings["publish_s"] = time.perf_counter() - started
    started = time.perf_counter()
    trained = train(home.releases)
    timings["train_s"] = time.perf_counter() - started
    folder, result = evaluate_router(home.releases, trained.version, bootstrap=args.bootstrap)
    _, document = eval_report.build(home.releases)

    router = Router.load(folder, exploration=0.0)
    test = read_examples(home.releases / "router_examples" / "latest" / "data" / "test.parquet")
    latencies = []
    for text in (test.texts * 10)[:2000]:
        t0 = time.perf_counter()
        router.decide([{"role": "user", "content": text}])
        latencies.append((time.perf_counter() - t0) * 1000)

    every = sorted((home.releases / "router_examples" / "latest" / "data").glob("*.parquet"))
    examples = read_examples(every)
    rules = load_rules()
    pool = np.array([split in rules.eval.pool for split in examples.splits])
    base_mae, base_rho = uniform_baseline(examples, pool, rules.eval.share)
    orders = over_orders(examples, pool, rules.eval.share)

    best = result.single[result.most_accurate]
    rows = [("test prompts", result.prompts, ""),
            ("most accurate single model", f"{result.most_accurate}: {best['quality']:.3f} at ${best['cost']:.6f}",
             ""),
            ("AIQ router / hull", f"{result.aiq:.4f} / {result.aiq_single_hull:.4f}",
             f"ratio {result.aiq / result.aiq_single_hull:.4f}"),
            ("AIQ gain over hull (95% CI)", f"{result.aiq_gain_over_hull:+.4f}",
             f"{result.aiq_gain_ci[0]:+.4f} to {result.aiq_gain_ci[1]:+.4f}"),
            ("accuracy at 25% cost / best", f"{result.accuracy_at_quarter_cost_ratio:.4f}", "target >= 0.99"),
            ("cost to match best / best", str(result.cost_ratio_at_best_accuracy), ""),
            ("APGR, CPT 50/80/95", f"{result.apgr:.3f}", f"{result.cpt}"),
            ("eval set share", f"{document['eval_share']:.3f}", "target <= 0.05"),
            ("eval MAE (uniform baseline)", f"{document['eval_mae']:.4f}", f"{base_mae:.4f}; target <= 0.02"),
            ("eval Spearman (uniform)", f"{document['eval_spearman']:.3f}", f"{base_rho:.3f}; target >= 0.95"),
            ("eval MAE / Spearman, mean of 20 orders", f"{orders['eval_mae_mean_over_orders']:.4f} / "
                                                       f"{orders['eval_spearman_mean_over_orders']:.3f}",
             f"Spearman p10 {orders['eval_spearman_p10_over_orders']:.3f}"),
            ("eval Spearman ceiling (all outcomes)", f"{orders['eval_spearman_ceiling']:.3f}",
             "one set chosen knowing every model"),
            ("decision latency p50 / p99 (ms)", f"{np.percentile(latencies, 50):.3f} / "
                                                 f"{np.percentile(latencies, 99):.3f}", "target p99 < 5"),
            *((name, f"{seconds:.1f} s", "") for name, seconds in timings.items())]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value}  {note}")
    print(json.dumps({
        **result.summary(), "aiq_hull": result.aiq_single_hull,
        "aiq_ratio_to_hull": result.aiq / result.aiq_single_hull,
        "most_accurate": result.most_accurate, "most_accurate_quality": best["quality"],
        "eval_share": document["eval_share"], "eval_mae": document["eval_mae"],
        "eval_spearman": document["eval_spearman"], "eval_uniform_mae": base_mae, "eval_uniform_spearman": base_rho,
        **orders,
        "decision_p50_ms": float(np.percentile(latencies, 50)), "decision_p99_ms": float(np.percentile(latencies, 99)),
        **{k: round(v, 2) for k, v in timings.items()}, "data": str(args.data),
    }))


if __name__ == "__main__":
    main()
