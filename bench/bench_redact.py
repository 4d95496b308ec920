"""Redaction: recall per type on planted secrets, false positives per type on clean text, and speed.

    uv run python bench/bench_redact.py                  # 20,000 planted items, 40,000 clean texts
    uv run python bench/bench_redact.py --planted 5000 --clean 10000

Planted: secrets and personal data of every supported type in the shapes they have in the wild (international
phone numbers, IBANs, cards, keys, ...: tests/test_redact.py). Clean: the shared GSM8K sample's prompts and
answers when it is beside the checkout, and a built corpus of numbers, code and structure
(tests/support/clean_corpus.py). Targets (issue 15): recall >= 0.99 per type; at most 1 false positive per
10,000 texts per type. The baseline is one compiled e-mail pattern over the same texts, measured in the same
run: how much the full redaction costs against the cheapest real one. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GSM8K = REPO.parent / "shared" / "data" / "zeroeval_gsm8k.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planted", type=int, default=20_000)
    parser.add_argument("--clean", type=int, default=40_000)
    args = parser.parse_args()

    import orjson

    from flywheel.redact import DETECTORS, redact
    from tests.support.clean_corpus import clean_texts
    from tests.test_redact import in_context, planted

    rng = random.Random(11)
    planted_by, missed_by = Counter(), Counter()
    texts = []
    for _ in range(args.planted):
        kind, secret, placeholder = planted(rng)
        text = in_context(kind, secret, rng)
        texts.append(text)
        out = redact(text)
        planted_by[kind] += 1
        missed_by[kind] += secret in out or f"[{placeholder}]" not in out

    clean = clean_texts(args.clean, seed=3)
    sources = {"built (numbers, code, structure)": clean}
    if GSM8K.exists():
        gsm = []
        with gzip.open(GSM8K) as handle:
            for line in handle:
                record = orjson.loads(line)
                gsm += [record["messages"][-1]["content"], record["response"] or ""]
        sources["GSM8K (shared sample)"] = gsm
    false_positives: dict[str, Counter] = {}
    for name, corpus in sources.items():
        counts: Counter = Counter()
        for text in corpus:
            redact(text, counts)
        false_positives[name] = counts

    everything = texts + [t for corpus in sources.values() for t in corpus]
    started = time.perf_counter()
    for text in everything:
        redact(text)
    seconds = time.perf_counter() - started
    email = re.compile(DETECTORS[[d.name for d in DETECTORS].index("email")].pattern)
    started = time.perf_counter()
    for text in everything:
        email.sub("[EMAIL]", text)
    baseline = time.perf_counter() - started

    recall = {kind: 1 - missed_by[kind] / n for kind, n in sorted(planted_by.items())}
    print(f"{'type':18s} {'planted':>8s} {'recall':>7s}")
    for kind, value in recall.items():
        print(f"{kind:18s} {planted_by[kind]:8,d} {value:7.4f}")
    for name, counts in false_positives.items():
        n = len(sources[name])
        per_10k = {kind: round(10_000 * c / n, 2) for kind, c in counts.items()}
        print(f"false positives on {n:,} texts of {name}: {dict(counts) or 'none'} (per 10,000: {per_10k or 0})")
    rate = len(everything) / seconds
    print(f"speed: {rate:,.0f} texts/s over {len(everything):,} texts; one e-mail pattern alone: "
          f"{len(everything) / baseline:,.0f} texts/s ({seconds / baseline:.1f}x its time)")
    worst_fp = max((10_000 * c / len(sources[name]) for name, counts in false_positives.items()
                    for c in counts.values()), default=0.0)
    print(json.dumps({
        "benchmark": "redact", "planted": args.planted, "clean_texts": {k: len(v) for k, v in sources.items()},
        "min_recall": round(min(recall.values()), 4), "recall": {k: round(v, 4) for k, v in recall.items()},
        "false_positives": {name: dict(c) for name, c in false_positives.items()},
        "worst_false_positives_per_10k": round(worst_fp, 2), "texts_per_s": round(rate),
        "baseline_email_only_texts_per_s": round(len(everything) / baseline),
        "ratio_vs_baseline": round(seconds / baseline, 2),
    }))


if __name__ == "__main__":
    main()
