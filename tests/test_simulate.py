"""The traffic simulator produces what the demo job and the benchmarks rely on."""

from __future__ import annotations

import statistics
from collections import Counter

import orjson

from flywheel.simulate import simulate


def test_simulated_traffic_looks_like_production(tmp_path):
    path = tmp_path / "sim.jsonl"
    counts = simulate(path, 5_000, seed=1, malformed_rate=0.01)
    interactions, feedback, malformed, line_of = [], [], 0, {}
    for line_no, line in enumerate(path.read_bytes().splitlines()):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            malformed += 1
            continue
        (interactions if record.get("kind") == "interaction" else feedback).append(record)
        line_of[(record.get("kind"), record.get("request_id"))] = line_no
    assert len(interactions) + malformed >= counts["interactions"]
    assert counts["malformed"] > 20 and malformed > 0
    assert len({r["app_id"] for r in interactions}) >= 4
    assert len({r.get("model") for r in interactions}) >= 4
    prompts = Counter(r["messages"][-1]["content"] for r in interactions if "messages" in r)
    assert sum(n for n in prompts.values() if n > 1) > 500  # exact repeats
    latencies = [r["latency_ms"] for r in interactions if isinstance(r.get("latency_ms"), float)]
    assert statistics.mean(latencies) > statistics.median(latencies)  # a long tail
    by_id = {r["request_id"]: r for r in interactions}
    rated = [f for f in feedback if f["request_id"] in by_id]
    assert sum(f["timestamp"] > by_id[f["request_id"]]["timestamp"] for f in rated) == len(rated)  # delayed
    assert {f["feedback_type"] for f in feedback} == {"thumbs", "rating", "task_success", "correction"}
    arrived_first = [f for f in rated if line_of[("feedback", f["request_id"])]
                     < line_of[("interaction", f["request_id"])]]
    assert 0 < len(arrived_first) < 0.1 * len(rated)  # a few feedback events precede their interaction


def test_the_same_seed_gives_the_same_traffic(tmp_path):
    from datetime import UTC, datetime

    end = datetime(2026, 11, 1, tzinfo=UTC)
    simulate(tmp_path / "a.jsonl", 500, seed=3, end=end)
    simulate(tmp_path / "b.jsonl", 500, seed=3, end=end)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
