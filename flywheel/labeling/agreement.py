"""Agreement between annotators on the same record (overlap, `min_submitted` > 1), and sending records with low
agreement back for another label.

Pairwise agreement of two answers to one question:
    label (single choice)  1 if equal, else 0
    multi-label            Jaccard similarity of the two label sets (both empty: 1)
    rating                 1 - |a - b| / (max - min of the scale)
Free-text questions are not compared. A record's agreement is the mean over its annotator pairs; a question's
is the mean over all pairs of all records. A record whose agreement on any compared question is below the
threshold is queued again as a new Argilla record (`<record_id>~r<round>`), with the same fields, until
`max_rounds`; the labels of all rounds carry the same request_id.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from itertools import combinations
from typing import Any

import duckdb

from flywheel.labeling.datasets import DatasetSpec
from flywheel.warehouse import new_records, transaction


def pair_agreement(kind: str, a: Any, b: Any, scale: tuple[float, float] | None = None) -> float | None:
    if a is None or b is None:
        return None
    if kind == "multi_label":
        left, right = set(a or []), set(b or [])
        return 1.0 if not left and not right else len(left & right) / len(left | right)
    if kind == "rating" and scale:
        low, high = scale
        return 1.0 - abs(float(a) - float(b)) / ((high - low) or 1.0)
    if kind in {"label", "rating"}:
        return 1.0 if a == b else 0.0
    return None


def record_agreements(answers_by_user: list[dict[str, Any]], questions: list[dict[str, Any]]) -> dict[str, tuple]:
    """{question: (annotators, mean pairwise agreement, pairs)} for one record's submitted answers."""
    out = {}
    for question in questions:
        kind = question["type"]
        if kind not in {"label", "multi_label", "rating"}:
            continue
        scale = (min(question["values"]), max(question["values"])) if kind == "rating" else None
        values = [answers.get(question["name"]) for answers in answers_by_user]
        values = [v for v in values if v is not None]
        scores = [s for a, b in combinations(values, 2) if (s := pair_agreement(kind, a, b, scale)) is not None]
        if scores:
            out[question["name"]] = (len(values), sum(scores) / len(scores), len(scores))
    return out


def compute_agreement(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, threshold: float = 0.5,
                      max_rounds: int = 3) -> tuple[dict[str, float | None], int]:
    """Recompute labeling.agreement and labeling.record_agreement for a dataset; queue low-agreement records
    again. Returns ({question: agreement}, records re-queued)."""
    rows = con.execute("SELECT record_id, answers FROM labeling.labels WHERE dataset = ? AND status = 'submitted'",
                       [spec.name]).fetchall()
    by_record: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record_id, answers in rows:
        by_record[record_id].append(json.loads(answers))
    per_record = []
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])  # records, pairs, sum
    low: set[str] = set()
    for record_id, answers in by_record.items():
        if len(answers) < 2:
            continue
        for question, (annotators, score, pairs) in record_agreements(answers, spec.config["questions"]).items():
            per_record.append([record_id, question, annotators, score])
            totals[question][0] += 1
            totals[question][1] += pairs
            totals[question][2] += score * pairs
            if score < threshold:
                low.add(record_id)
    now = datetime.now(UTC)
    summary = {q: (t[2] / t[1] if t[1] else None) for q, t in totals.items()}
    with transaction(con):
        con.execute("DELETE FROM labeling.agreement WHERE dataset = ?", [spec.name])
        con.execute("DELETE FROM labeling.record_agreement WHERE record_id IN "
                    "(SELECT record_id FROM labeling.queue WHERE dataset = ?)", [spec.name])
        if totals:
            con.executemany("INSERT INTO labeling.agreement VALUES (?, ?, ?, ?, ?, ?)",
                            [[spec.name, q, int(t[0]), int(t[1]), summary[q], now] for q, t in totals.items()])
        if per_record:
            con.executemany("INSERT INTO labeling.record_agreement VALUES (?, ?, ?, ?)", per_record)
        requeued = _requeue(con, spec, sorted(low), max_rounds, now)
    return summary, requeued


def _requeue(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, record_ids: list[str], max_rounds: int,
             now: datetime) -> int:
    """A new round for each low-agreement record whose item has no newer round yet and is under max_rounds."""
    if not record_ids:
        return 0
    rows = con.execute("""
        SELECT q.* FROM labeling.queue q
        WHERE q.record_id IN (SELECT unnest(?)) AND q.round < ?
          AND NOT EXISTS (SELECT 1 FROM labeling.queue later
                          WHERE later.parent_record_id = coalesce(q.parent_record_id, q.record_id)
                            AND later.round > q.round)
    """, [record_ids, max_rounds]).pl().to_dicts()
    for row in rows:
        origin = row["parent_record_id"] or row["record_id"]
        next_round = row["round"] + 1
        record = json.loads(row["record"])
        record["id"] = f"{origin}~r{next_round}"
        if "round" in spec.metadata_names:
            record["metadata"]["round"] = next_round
        con.execute(f"""
            INSERT INTO labeling.queue (record_id, dataset, kind, request_id, request_id_b, cluster_id, app_id, model,
                                        model_b, strategy, round, parent_record_id, record, queued_at)
            {new_records("labeling.queue", "record_id", "?, ?, ?, ?, ?, ?, ?, ?, ?, 'low_agreement', ?, ?, ?, ?")}
        """, [record["id"], row["dataset"], row["kind"], row["request_id"], row["request_id_b"], row["cluster_id"],
              row["app_id"], row["model"], row["model_b"], next_round, origin, json.dumps(record), now])
    return len(rows)
