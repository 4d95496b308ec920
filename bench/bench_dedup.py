"""Near-duplicate detection: throughput, memory and accuracy, next to datasketch's MinHashLSH.

    uv run python bench/bench_dedup.py                    # the shared sample (if present) and 1,000,000 prompts
    uv run python bench/bench_dedup.py --rows 200000      # fewer simulated prompts

For each corpus: flywheel's signatures + LSH clustering (docs/s, peak RSS of its own process), datasketch
MinHash + MinHashLSH(threshold, num_perm=128) on the same texts (on a sample of at most --baseline-docs, as
it runs at about 1,000 docs/s), and the ratio of the two throughputs. Accuracy: on a sample of texts, every
pair whose exact Jaccard similarity (of the same 5-word shingles) reaches the threshold is a true pair;
flywheel's pairs are those sharing an LSH bucket whose estimated similarity reaches it.
Target (issue 3): >= 20,000 docs/s on 2 cores; precision and recall >= 0.95.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data" / "zeroeval_gsm8k.jsonl.gz"


def load_texts(corpus: str, rows: int) -> list[str]:
    import orjson

    texts = []
    if corpus == "zeroeval":
        with gzip.open(SHARED) as handle:
            for line in handle:
                record = orjson.loads(line)
                texts.append(record["messages"][-1]["content"] + "\n" + (record["response"] or ""))
        return texts
    from flywheel.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sim.jsonl"
        simulate(path, rows, seed=5, malformed_rate=0)
        with path.open("rb") as handle:
            for line in handle:
                record = orjson.loads(line)
                if record.get("kind") == "interaction":
                    texts.append(record["messages"][-1]["content"])
    return texts


def child(kind: str, corpus: str, rows: int, limit: int) -> None:
    texts = load_texts(corpus, rows)[:limit] if limit else load_texts(corpus, rows)
    from flywheel.dedup import MinHasher, cluster

    started = time.perf_counter()
    if kind == "flywheel":
        hasher = MinHasher()
        signatures, small = hasher.sketch(texts, workers=2)
        clusters = len(set(cluster([str(i) for i in range(len(texts))], signatures, hasher, small).values()))
    else:
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=0.8, num_perm=128)
        for i, text in enumerate(texts):
            words = text.lower().split()
            shingles = {" ".join(words[j:j + 5]) for j in range(max(1, len(words) - 4))}
            m = MinHash(num_perm=128)
            m.update_batch([s.encode() for s in shingles])
            lsh.query(m)
            lsh.insert(str(i), m)
        clusters = -1
    seconds = time.perf_counter() - started
    print(json.dumps({"docs": len(texts), "seconds": seconds, "clusters": clusters,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def accuracy(texts: list[str], threshold: float = 0.8) -> tuple[float, float, int]:
    import numpy as np

    from flywheel.dedup import MinHasher, pair_similarity

    hasher = MinHasher()
    flat, owner = hasher.shingles(texts)
    sets = [set() for _ in texts]
    for value, doc in zip(flat.tolist(), owner.tolist(), strict=True):
        sets[doc].add(value)
    index: dict[int, list[int]] = {}
    for doc, shingles in enumerate(sets):
        for value in shingles:
            index.setdefault(value, []).append(doc)
    truth = set()
    candidates = {(a, b) for docs in index.values() if len(docs) < 500
                  for i, a in enumerate(docs) for b in docs[i + 1:]}
    for a, b in candidates:
        union = len(sets[a] | sets[b])
        if union and len(sets[a] & sets[b]) / union >= threshold:
            truth.add((a, b))
    signatures, small = hasher.sketch(texts)
    keys = hasher.band_keys(signatures)
    buckets: dict[tuple[int, int], list[int]] = {}
    for doc in range(len(texts)):
        for band, key in enumerate(keys[doc].tolist()):
            buckets.setdefault((band, key), []).append(doc)
    shared = {(a, b) for docs in buckets.values() for i, a in enumerate(docs) for b in docs[i + 1:]}
    pairs = np.array(sorted(shared)) if shared else np.empty((0, 2), int)
    scores = pair_similarity(signatures[pairs[:, 0]], signatures[pairs[:, 1]], [small[i] for i in pairs[:, 0]],
                             [small[j] for j in pairs[:, 1]], threshold) if len(pairs) else []
    predicted = {tuple(p) for p in pairs[np.asarray(scores) >= threshold].tolist()} if len(pairs) else set()
    hits = len(predicted & truth)
    return (hits / len(predicted) if predicted else 1.0), (hits / len(truth) if truth else 1.0), len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-docs", type=int, default=20_000)
    parser.add_argument("--accuracy-docs", type=int, default=3_000)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return
    corpora = (["zeroeval"] if SHARED.exists() else []) + ["simulated"]
    for corpus in corpora:
        figures = {}
        for kind, limit in (("flywheel", 0), ("datasketch", args.baseline_docs)):
            out = subprocess.run([sys.executable, __file__, "--child", kind, corpus, str(args.rows), str(limit)],
                                 capture_output=True, text=True, check=True)
            figures[kind] = result = json.loads(out.stdout.strip().splitlines()[-1])
            result["docs_per_s"] = result["docs"] / result["seconds"]
            print(f"{corpus:9s} {kind:10s} {result['docs']:>9,} docs {result['seconds']:7.2f} s "
                  f"{result['docs_per_s']:>9,.0f} docs/s  peak RSS {result['peak_rss_mb']:,.0f} MB"
                  + (f"  clusters {result['clusters']:,}" if result["clusters"] >= 0 else ""))
        ratio = figures["flywheel"]["docs_per_s"] / figures["datasketch"]["docs_per_s"]
        sample = load_texts(corpus, min(args.rows, 20_000))[: args.accuracy_docs if corpus == "simulated" else None]
        precision, recall, true_pairs = accuracy(sample)
        print(f"{corpus:9s} speed-up over datasketch: {ratio:.1f}x (target: >= 20,000 docs/s); "
              f"on {len(sample):,} texts ({true_pairs:,} true pairs at Jaccard >= 0.8): "
              f"precision {precision:.3f}, recall {recall:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
