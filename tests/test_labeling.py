"""Choosing what humans label, and agreement between them: no Argilla needed for these."""

from __future__ import annotations

import json

import pytest

from flywheel.labeling import sampling
from flywheel.labeling.agreement import compute_agreement, pair_agreement, record_agreements
from flywheel.labeling.datasets import PAIRWISE, RESPONSE_REVIEW, LabelingConfigError, load_sampling, load_spec
from flywheel.redact import redact

REVIEW = load_spec(RESPONSE_REVIEW)
PAIRS = load_spec(PAIRWISE)
CONFIG = load_sampling()


def test_quotas_split_the_budget_exactly_by_weight():
    assert sampling.quotas(10, {"negative_feedback": 0.5, "control": 0.5}) == {"negative_feedback": 5, "control": 5}
    split = sampling.quotas(7, CONFIG["response_review"]["strategies"])
    assert sum(split.values()) == 7 and list(split) == list(CONFIG["response_review"]["strategies"])
    with pytest.raises(ValueError, match="unknown sampling strategies"):
        sampling.quotas(5, {"vibes": 1.0})


def test_sampling_fills_the_budget_one_representative_per_cluster(warehouse_copy):
    con = warehouse_copy
    report = sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=120)
    assert report.queued == 120 and set(report.queued_by_strategy) == set(sampling.STRATEGIES)
    assert all(n > 0 for n in report.queued_by_strategy.values()), report.queued_by_strategy
    rows = con.execute("SELECT count(*), count(DISTINCT cluster_id), count(DISTINCT request_id) "
                       "FROM labeling.queue").fetchone()
    assert rows == (120, 120, 120)
    not_representative = con.execute("""
        SELECT count(*) FROM labeling.queue q JOIN intermediate.int_cluster_members m USING (request_id)
        WHERE NOT m.is_representative""").fetchone()[0]
    assert not_representative == 0


def test_each_strategy_picks_what_it_promises(warehouse_copy):
    con = warehouse_copy
    sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=100)
    picked = con.execute("""
        SELECT q.strategy, c.feedback_score, c.feedback_conflict, c.task_success, c.cluster_n_models,
               c.cluster_feedback_spread, c.cluster_first_date = (SELECT max(event_date) FROM
                   intermediate.int_labeling_candidates) AS newest, c.app_id, c.model
        FROM labeling.queue q JOIN intermediate.int_labeling_candidates c USING (request_id)""").pl()
    negative = picked.filter(picked["strategy"] == "negative_feedback").to_dicts()
    assert all(r["feedback_score"] < 0.5 or r["feedback_conflict"] or r["task_success"] is False for r in negative)
    disagreement = picked.filter(picked["strategy"] == "model_disagreement").to_dicts()
    assert all(r["cluster_n_models"] >= 2 and r["cluster_feedback_spread"] > 0 for r in disagreement)
    assert all(r["newest"] for r in picked.filter(picked["strategy"] == "novelty").to_dicts())
    # the judge's most uncertain: nothing left unpicked was closer to 0.5 than what it took
    distance = con.execute("""
        SELECT max(abs(c.judge_score - 0.5)) FILTER (WHERE q.strategy = 'judge_uncertainty'),
               min(abs(c.judge_score - 0.5)) FILTER (WHERE q.request_id IS NULL)
        FROM intermediate.int_labeling_candidates c LEFT JOIN labeling.queue q USING (request_id)
        WHERE c.is_representative""").fetchone()
    assert distance[0] is not None and distance[0] <= distance[1]
    control = picked.filter(picked["strategy"] == "control")
    strata = control.select(["app_id", "model"]).unique().height
    assert strata >= min(control.height, 10)  # spread over (app, model) strata, not the biggest one


def test_nothing_queued_or_labeled_is_queued_again(warehouse_copy):
    con = warehouse_copy
    first = sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=80)
    second = sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=80)
    assert second.candidates == first.candidates - 80
    assert con.execute("SELECT count(*), count(DISTINCT cluster_id) FROM labeling.queue").fetchone() == (160, 160)
    everything = sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=100_000)
    assert everything.queued == second.candidates - 80
    assert sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=50).queued == 0


def test_only_redacted_text_is_queued(warehouse_copy):
    con = warehouse_copy
    planted = con.execute("""
        SELECT count(*) FROM raw.interactions WHERE regexp_matches(messages::VARCHAR, '[\\w.]+@[\\w-]+\\.\\w+')""")
    assert planted.fetchone()[0] > 0  # the simulator plants emails: there is something to leak
    sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=100_000)
    sampling.sample_pairwise(con, PAIRS, CONFIG["pairwise"], budget=100_000)
    texts = []
    for (record,) in con.execute("SELECT record FROM labeling.queue").fetchall():
        fields = json.loads(record)["fields"]
        texts += [m["content"] for m in fields["conversation"]] + [v for k, v in fields.items() if k != "conversation"]
    assert len(texts) > 1000
    assert [t for t in texts if redact(t) != t] == []
    assert any("[EMAIL]" in t for t in texts)


def test_suggestions_come_from_feedback_or_the_judge_with_agent_and_score(warehouse_copy):
    con = warehouse_copy
    sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=150)
    records = [json.loads(r) for (r,) in con.execute("SELECT record FROM labeling.queue").fetchall()]
    verdicts = [s for r in records for s in r["suggestions"] if s["question"] == "verdict"]
    assert len(verdicts) == 150 and {s["agent"] for s in verdicts} == {"user-feedback", "heuristic-judge"}
    assert all(s["value"] in {"good", "bad"} and 0 <= s["score"] <= 1 for s in verdicts)
    assert set(records[0]["metadata"]) <= set(REVIEW.metadata_names)


def test_review_records_carry_the_prompt_embedding_for_find_similar(warehouse_copy):
    import numpy as np

    con = warehouse_copy
    sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=40)
    rows = con.execute("SELECT c.prompt_text, q.record FROM labeling.queue q "
                       "JOIN intermediate.int_labeling_candidates c USING (request_id)").fetchall()
    vectors = np.array([json.loads(record)["vectors"]["prompt_embedding"] for _, record in rows])
    assert vectors.shape == (40, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    similarity = vectors @ vectors.T
    same_text = [(i, j) for i in range(40) for j in range(i) if rows[i][0] == rows[j][0]]
    assert all(similarity[i, j] > 0.999 for i, j in same_text)


def test_pairs_are_two_models_of_one_cluster_never_queued_twice(warehouse_copy):
    con = warehouse_copy
    report = sampling.sample_pairwise(con, PAIRS, CONFIG["pairwise"], budget=30)
    assert report.queued == 30
    rows = con.execute("""
        SELECT q.model, q.model_b, a.cluster_id = b.cluster_id AND a.cluster_id = q.cluster_id
        FROM labeling.queue q
        JOIN intermediate.int_cluster_members a ON a.request_id = q.request_id
        JOIN intermediate.int_cluster_members b ON b.request_id = q.request_id_b""").fetchall()
    assert len(rows) == 30 and all(model != model_b and same for model, model_b, same in rows)
    again = sampling.sample_pairwise(con, PAIRS, CONFIG["pairwise"], budget=30)
    assert con.execute("SELECT count(DISTINCT cluster_id) FROM labeling.queue").fetchone()[0] == 30 + again.queued


def test_pairwise_agreement_by_question_type():
    assert pair_agreement("label", "good", "good") == 1.0 and pair_agreement("label", "good", "bad") == 0.0
    assert pair_agreement("multi_label", ["wrong", "unsafe"], ["wrong"]) == 0.5
    assert pair_agreement("rating", 5, 4, (1, 5)) == 0.75
    assert pair_agreement("text", "a", "b") is None
    scores = record_agreements([{"verdict": "good", "quality": 5}, {"verdict": "bad", "quality": 5},
                                {"verdict": "good"}], REVIEW.config["questions"])
    assert scores["verdict"] == (3, pytest.approx(1 / 3), 3) and scores["quality"] == (2, 1.0, 1)


def test_low_agreement_sends_a_record_back_for_another_round(warehouse_copy):
    con = warehouse_copy
    sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=2)
    first, second = [r for (r,) in con.execute("SELECT record_id FROM labeling.queue ORDER BY 1").fetchall()]
    labels = [(first, "u1", {"verdict": "good", "quality": 4}), (first, "u2", {"verdict": "bad", "quality": 2}),
              (second, "u1", {"verdict": "good", "quality": 4}), (second, "u2", {"verdict": "good", "quality": 5})]
    con.executemany("INSERT INTO labeling.labels VALUES (?, ?, NULL, ?, 'response_review', NULL, NULL, 'submitted', "
                    "?, 'h', 1, now(), now())", [[r, u, REVIEW.name, json.dumps(a)] for r, u, a in labels])
    summary, requeued = compute_agreement(con, REVIEW, threshold=0.5, max_rounds=2)
    assert summary["verdict"] == 0.5 and summary["quality"] == pytest.approx((0.5 + 0.75) / 2)
    assert requeued == 1
    again = con.execute("SELECT record_id, round, parent_record_id, strategy, record FROM labeling.queue "
                        "WHERE round = 2").fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in again] == [(f"{first}~r2", 2, first, "low_agreement")]
    assert json.loads(again[0][4])["metadata"]["round"] == 2
    assert compute_agreement(con, REVIEW, threshold=0.5, max_rounds=2)[1] == 0  # never twice


def test_a_bad_settings_file_names_the_file_and_entry(tmp_path):
    (tmp_path / "response_review.yaml").write_text(
        "name: x\nfields: [{name: f, type: text}]\nquestions: [{name: q, type: stars}]\n")
    with pytest.raises(LabelingConfigError, match=r"response_review.yaml: question 'q' has type 'stars'"):
        load_spec(RESPONSE_REVIEW, tmp_path)
    (tmp_path / "pairwise.yaml").write_text("name: [\n")
    with pytest.raises(LabelingConfigError, match=r"pairwise\.yaml"):
        load_spec(PAIRWISE, tmp_path)
