"""Choosing what humans label: a budget per run split over strategies, one representative per near-duplicate
cluster, nothing queued twice. Reads `intermediate.int_labeling_candidates` (redacted text only) and appends
to `labeling.queue`; Argilla is not involved here (see `sync.push`).

Strategies (order and weights in schemas/labeling/sampling.yaml):
    negative_feedback   thumbs down, low rating, failed task, or conflicting feedback on the same request
    judge_uncertainty   the heuristic judge's P(good) closest to 0.5, among answers whose outcome is not known
                        for sure (no verified task outcome; a human label means it was queued already)
    model_disagreement  clusters whose models got the most different feedback
    novelty             clusters first seen on the latest day
    control             a uniform random sample of every interaction, whatever its cluster, stratified per
                        (app, model) with an equal share each, hash-ordered with a seed; each pick's inclusion
                        probability is stored (labeling.queue) so estimates can be weighted: the unbiased basis
                        for quality estimates, and no model is left out by construction
The other strategies take one representative per near-duplicate cluster.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from flywheel.labeling.datasets import PAIRWISE, RESPONSE_REVIEW, DatasetSpec
from flywheel.labeling.store import ensure_labeling_tables
from flywheel.warehouse import new_records

CANDIDATES = "intermediate.int_labeling_candidates"

# strategy -> (which candidates qualify, how they rank)
STRATEGIES: dict[str, tuple[str, str]] = {
    "negative_feedback": ("representative AND (feedback_score < 0.5 OR feedback_conflict OR task_success = false)",
                          "feedback_conflict DESC, feedback_score ASC NULLS LAST, request_id"),
    "judge_uncertainty": ("representative AND task_success IS NULL", "abs(judge_score - 0.5), request_id"),
    "model_disagreement": ("representative AND cluster_n_models >= 2 AND cluster_feedback_spread > 0",
                           "cluster_feedback_spread DESC, cluster_size DESC, request_id"),
    "novelty": ("representative AND cluster_first_date = (SELECT max(event_date) FROM _fw_pool)",
                "cluster_size DESC, request_id"),
    "control": ("TRUE", "stratum_rank, sample_hash"),
}


@dataclass
class SampleReport:
    kind: str
    budget: int
    candidates: int
    queued_by_strategy: dict[str, int] = field(default_factory=dict)

    @property
    def queued(self) -> int:
        return sum(self.queued_by_strategy.values())


def quotas(budget: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer quotas that sum to the budget (largest remainders), in the configured order."""
    unknown = set(weights) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown sampling strategies {sorted(unknown)}; known: {sorted(STRATEGIES)}")
    total = sum(weights.values()) or 1.0
    exact = {name: budget * w / total for name, w in weights.items()}
    floors = {name: int(v) for name, v in exact.items()}
    left = budget - sum(floors.values())
    for name in sorted(exact, key=lambda n: floors[n] - exact[n])[:left]:
        floors[name] += 1
    return floors


def _pool(con: duckdb.DuckDBPyConnection, kind: str, seed: int) -> int:
    """Every interaction never queued for this kind of dataset; `representative` marks the cluster
    representatives whose cluster was never queued (what the strategies other than control draw from)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _fw_pool AS
        SELECT c.*,
               c.is_representative
                   AND NOT EXISTS (SELECT 1 FROM labeling.queue q WHERE q.kind = $kind AND q.cluster_id = c.cluster_id)
                   AS representative,
               md5(c.request_id || ':' || $seed) AS sample_hash,  -- md5: the same sample in every DuckDB version
               row_number() OVER (PARTITION BY c.app_id, c.model ORDER BY md5(c.request_id || ':' || $seed))
                   AS stratum_rank,
               count(*) OVER (PARTITION BY c.app_id, c.model) AS stratum_size
        FROM {CANDIDATES} c
        -- by request: a queued request's cluster may since have merged into one with another id
        WHERE NOT EXISTS (SELECT 1 FROM labeling.queue q WHERE q.request_id = c.request_id AND q.kind = $kind)
    """, {"seed": str(seed), "kind": kind})
    con.execute("CREATE OR REPLACE TEMP TABLE _fw_picked (request_id VARCHAR, strategy VARCHAR, pick INTEGER)")
    return con.execute("SELECT count(*) FROM _fw_pool").fetchone()[0]


def sample_response_review(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, config: dict[str, Any],
                           budget: int | None = None) -> SampleReport:
    """Queue up to `budget` interactions for review; returns how many each strategy contributed."""
    ensure_labeling_tables(con)
    budget = int(config.get("budget", 200) if budget is None else budget)
    if budget <= 0:  # nothing to queue: the candidates are not even looked at
        return SampleReport(RESPONSE_REVIEW, 0, 0)
    weights = config.get("strategies") or {"control": 1.0}
    report = SampleReport(RESPONSE_REVIEW, budget, _pool(con, RESPONSE_REVIEW, int(config.get("seed", 0))))
    carry = 0
    for strategy, quota in quotas(budget, weights).items():
        wanted = quota + carry
        where, order = STRATEGIES[strategy]
        con.execute(f"""
            INSERT INTO _fw_picked
            SELECT request_id, '{strategy}', row_number() OVER () + (SELECT count(*) FROM _fw_picked)
            FROM (SELECT request_id FROM _fw_pool
                  WHERE ({where}) AND request_id NOT IN (SELECT request_id FROM _fw_picked)
                  ORDER BY {order} LIMIT {wanted})
        """)
        got = con.execute("SELECT count(*) FROM _fw_picked WHERE strategy = ?", [strategy]).fetchone()[0]
        report.queued_by_strategy[strategy] = got
        carry = wanted - got  # budget a strategy cannot use passes on
    rows = con.execute("""
        SELECT p.strategy, c.* EXCLUDE (sample_hash, stratum_rank, stratum_size),
               -- the chance this interaction had to be in the control sample: picks / size of its stratum
               CASE WHEN p.strategy = 'control'
                    THEN count(*) FILTER (WHERE p.strategy = 'control') OVER (PARTITION BY c.app_id, c.model)
                         / c.stratum_size END AS inclusion_probability
        FROM _fw_picked p JOIN _fw_pool c USING (request_id) ORDER BY p.pick
    """).pl().to_dicts()
    vectors = _prompt_vectors(spec, rows)
    _append(con, spec, [review_record(row, spec, vector) for row, vector in zip(rows, vectors, strict=True)])
    return report


def _prompt_vectors(spec: DatasetSpec, rows: list[dict[str, Any]]) -> list[list[float] | None]:
    """The redacted prompt's embedding for each row, when the dataset declares a `prompt_embedding` vector."""
    wanted = [v for v in spec.config.get("vectors") or [] if v["name"] == "prompt_embedding"]
    if not wanted or not rows:
        return [None] * len(rows)
    from flywheel.embed import DIMENSIONS, embed

    if wanted[0]["dimensions"] != DIMENSIONS:
        raise ValueError(f"{spec.path}: prompt_embedding must have {DIMENSIONS} dimensions (flywheel.embed)")
    matrix = embed([row.get("prompt_text") for row in rows])
    return [None if not vector.any() else [round(float(x), 5) for x in vector] for vector in matrix]


def sample_pairwise(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, config: dict[str, Any],
                    budget: int | None = None) -> SampleReport:
    """Queue pairs of two models' answers to the same conversation (the same prompt, not merely a near-duplicate:
    an annotator sees one question, and both answers must answer it), most contrasting first, the budget spread
    over apps in turn."""
    ensure_labeling_tables(con)
    budget = int(config.get("budget", 50) if budget is None else budget)
    if budget <= 0:
        return SampleReport(PAIRWISE, 0, 0)
    min_models = int(config.get("min_models", 2))
    pool = con.execute(f"""
        SELECT count(DISTINCT cluster_id) FROM {CANDIDATES} c
        WHERE cluster_n_models >= {min_models}
          AND NOT EXISTS (SELECT 1 FROM labeling.queue q WHERE q.kind = '{PAIRWISE}' AND q.cluster_id = c.cluster_id)
    """).fetchone()[0]
    rows = con.execute(f"""
        WITH members AS (
            SELECT c.*,
                   row_number() OVER (PARTITION BY cluster_id, conversation_hash
                                      ORDER BY coalesce(feedback_score, -1) DESC, judge_score DESC, request_id) AS best
            FROM {CANDIDATES} c
            WHERE cluster_n_models >= {min_models} AND status = 'ok'
              AND NOT EXISTS (SELECT 1 FROM labeling.queue q
                              WHERE q.kind = '{PAIRWISE}' AND q.cluster_id = c.cluster_id)
        ),
        a AS (SELECT * FROM members WHERE best = 1),
        b AS (
            SELECT m.*, row_number() OVER (PARTITION BY m.cluster_id, m.conversation_hash
                                           ORDER BY coalesce(m.feedback_score, 2), m.judge_score, m.request_id)
                       AS worst
            FROM members m JOIN a ON m.cluster_id = a.cluster_id AND m.conversation_hash = a.conversation_hash
                                 AND m.model <> a.model
        ),
        pairs AS (
            SELECT a.cluster_id, a.cluster_size, a.app_id, a.messages,
                   a.request_id AS request_id_1, a.model AS model_1, a.response_text AS response_1,
                   b.request_id AS request_id_2, b.model AS model_2, b.response_text AS response_2,
                   coalesce(a.feedback_score, 0.5) - coalesce(b.feedback_score, 0.5) AS contrast
            FROM a JOIN b ON a.cluster_id = b.cluster_id AND a.conversation_hash = b.conversation_hash
                         AND b.worst = 1
            QUALIFY row_number() OVER (PARTITION BY a.cluster_id ORDER BY contrast DESC, a.request_id) = 1
        )
        SELECT * FROM pairs
        -- the most contrasting pair of each app, then each app's second, ...: every app gets its share
        ORDER BY row_number() OVER (PARTITION BY app_id ORDER BY contrast DESC, cluster_size DESC, cluster_id),
                 contrast DESC, cluster_id
        LIMIT {budget}
    """).pl().to_dicts()
    _append(con, spec, [pair_record(row) for row in rows])
    return SampleReport(PAIRWISE, budget, pool, {"contrast": len(rows)})


def queued_today(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> int:
    """Records sampled into a dataset today (UTC), not counting later rounds of low-agreement records."""
    ensure_labeling_tables(con)
    return con.execute("""SELECT count(*) FROM labeling.queue WHERE dataset = ? AND round = 1
                          AND queued_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'""",
                       [spec.name]).fetchone()[0]


def _append(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, items: list[dict[str, Any]]) -> None:
    if not items:
        return
    now = datetime.now(UTC)
    con.executemany(
        "INSERT INTO labeling.queue (record_id, dataset, kind, request_id, request_id_b, cluster_id, app_id, model, "
        "model_b, strategy, round, parent_record_id, record, queued_at, inclusion_probability) "
        + new_records("labeling.queue", "record_id", "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?"),
        [[i["record"]["id"], spec.name, spec.kind, i["request_id"], i.get("request_id_b"), i["cluster_id"],
          i.get("app_id"), i.get("model"), i.get("model_b"), i["strategy"], i.get("round", 1),
          i.get("parent_record_id"), json.dumps(i["record"]), now, i.get("inclusion_probability")] for i in items],
    )


def _chat(messages: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Messages as Argilla's chat field shows them; tool calls and tool results as readable text."""
    chat = []
    for message in messages or []:
        content = message.get("content")
        if not content and message.get("tool_calls"):
            content = f"[tool calls] {message['tool_calls']}"
        role = message.get("role") or "user"
        shown = {"developer": "system", "tool": "assistant"}.get(role, role)
        chat.append({"role": shown if shown in {"user", "assistant", "system"} else "assistant",
                     "content": content if role != "tool" else f"[tool result] {content}"})
        chat[-1]["content"] = chat[-1]["content"] or "(empty)"
    return chat or [{"role": "user", "content": "(no messages)"}]


def _response_text(row: dict[str, Any]) -> str:
    if row.get("status") != "ok":
        return f"[error] {row.get('error') or 'the call failed'}"
    response = row.get("response") or {}
    parts = [row.get("response_text") or ""]
    if response.get("tool_calls"):
        parts.append(f"[tool calls] {response['tool_calls']}")
    if response.get("refusal"):
        parts.append(f"[refusal] {response['refusal']}")
    return "\n\n".join(p for p in parts if p) or "(empty response)"


def review_record(row: dict[str, Any], spec: DatasetSpec, vector: list[float] | None = None) -> dict[str, Any]:
    """One response-review record (id, fields, metadata, suggestions, vectors) from a candidate row."""
    suggestions = []
    # The agent names where a signal came from: the feedback's sources and types ("grader/task_success").
    agent = ", ".join(row.get("feedback_agents") or []) or "feedback"
    if row.get("feedback_score") is not None:
        good = row["feedback_score"] >= 0.5
        suggestions.append({"question": "verdict", "value": "good" if good else "bad", "agent": agent,
                            "score": round(abs(row["feedback_score"] - 0.5) * 2, 3)})
    else:
        p_good = float(row["judge_score"])
        suggestions.append({"question": "verdict", "value": "good" if p_good >= 0.5 else "bad",
                            "agent": "heuristic-judge", "score": round(max(p_good, 1 - p_good), 3)})
    if row.get("rating_score") is not None:
        suggestions.append({"question": "quality", "value": round(1 + 4 * row["rating_score"]),
                            "agent": agent, "score": 1.0})
    if row.get("judge_issues"):
        suggestions.append({"question": "issues", "value": list(row["judge_issues"]), "agent": "heuristic-judge",
                            "score": [0.6] * len(row["judge_issues"])})
    if row.get("correction"):
        suggestions.append({"question": "correction", "value": row["correction"], "agent": agent,
                            "score": 1.0})
    metadata = {
        "model": row.get("model"),
        "app_id": row.get("app_id"),
        "strategy": row["strategy"],
        "cost_usd": _number(row.get("cost_usd")),
        "latency_ms": _number(row.get("latency_ms")),
        "feedback_score": _number(row.get("feedback_score")),
        "cluster_size": int(row.get("cluster_size") or 1),
        "round": 1,
    }
    wanted = set(spec.metadata_names)
    record = {
        "id": f"rr-{row['request_id']}",
        "fields": {"conversation": _chat(row.get("messages")), "response": _response_text(row)},
        "metadata": {k: v for k, v in metadata.items() if k in wanted and v is not None},
        "suggestions": [s for s in suggestions if s["question"] in spec.question_names],
        "vectors": {"prompt_embedding": vector} if vector is not None else {},
    }
    return {"record": record, "request_id": row["request_id"], "cluster_id": row["cluster_id"],
            "app_id": row.get("app_id"), "model": row.get("model"), "strategy": row["strategy"],
            "inclusion_probability": row.get("inclusion_probability")}


def pair_record(row: dict[str, Any]) -> dict[str, Any]:
    """One pairwise record; a hash of the pair decides which answer is shown as A."""
    first, second = (row["request_id_1"], row["model_1"], row["response_1"]), \
                    (row["request_id_2"], row["model_2"], row["response_2"])
    key = hashlib.blake2b(f"{first[0]}|{second[0]}".encode(), digest_size=8).hexdigest()
    a, b = (first, second) if int(key, 16) % 2 == 0 else (second, first)
    record = {
        "id": f"pw-{key}",
        "fields": {"conversation": _chat(row.get("messages")), "response_a": a[2] or "(empty response)",
                   "response_b": b[2] or "(empty response)"},
        "metadata": {"model_a": a[1], "model_b": b[1], "app_id": row.get("app_id"),
                     "cluster_size": int(row.get("cluster_size") or 1), "round": 1},
        "suggestions": [],
    }
    return {"record": record, "request_id": a[0], "request_id_b": b[0], "cluster_id": row["cluster_id"],
            "app_id": row.get("app_id"), "model": a[1], "model_b": b[1], "strategy": "contrast"}


def _number(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)
