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


def test_sampling_fills_the_budget_one_representative_per_cluster_but_control_draws_from_all(warehouse_copy):
    con = warehouse_copy
    report = sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=120)
    assert report.queued == 120 and set(report.queued_by_strategy) == set(sampling.STRATEGIES)
    assert all(n > 0 for n in report.queued_by_strategy.values()), report.queued_by_strategy
    assert con.execute("SELECT count(DISTINCT request_id) FROM labeling.queue").fetchone()[0] == 120
    others = con.execute("""
        SELECT count(*), count(DISTINCT q.cluster_id), count(*) FILTER (WHERE NOT m.is_representative)
        FROM labeling.queue q JOIN intermediate.int_cluster_members m USING (request_id)
        WHERE q.strategy <> 'control'""").fetchone()
    assert others[0] == others[1] and others[2] == 0  # one representative per cluster
    control = con.execute("""SELECT count(*), min(inclusion_probability), max(inclusion_probability)
                             FROM labeling.queue WHERE strategy = 'control'""").fetchone()
    assert control[0] > 0 and 0 < control[1] <= control[2] <= 1


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
    # the judge's most uncertain, among answers whose outcome is not known for sure: nothing left unpicked was
    # closer to 0.5 than what it took, and nothing it took had a verified outcome
    distance = con.execute("""
        SELECT max(abs(c.judge_score - 0.5)) FILTER (WHERE q.strategy = 'judge_uncertainty'),
               min(abs(c.judge_score - 0.5)) FILTER (WHERE q.request_id IS NULL),
               count(*) FILTER (WHERE q.strategy = 'judge_uncertainty' AND c.task_success IS NOT NULL)
        FROM intermediate.int_labeling_candidates c LEFT JOIN labeling.queue q USING (request_id)
        WHERE c.is_representative AND (c.task_success IS NULL OR q.strategy = 'judge_uncertainty')""").fetchone()
    assert distance[0] is not None and distance[0] <= distance[1] and distance[2] == 0
    control = picked.filter(picked["strategy"] == "control")
    strata = control.select(["app_id", "model"]).unique().height
    assert strata >= min(control.height, 10)  # spread over (app, model) strata, not the biggest one


def test_nothing_queued_or_labeled_is_queued_again(warehouse_copy):
    con = warehouse_copy
    first = sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=80)
    second = sampling.sample_response_review(con, REVIEW, CONFIG["response_review"], budget=80)
    assert second.candidates == first.candidates - 80
    assert con.execute("SELECT count(*), count(DISTINCT request_id) FROM labeling.queue").fetchone() == (160, 160)
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
    agents = {s["agent"] for s in verdicts}
    assert len(verdicts) == 150 and "heuristic-judge" in agents and "user-feedback" not in agents
    # the actual source and type of the signal: a grader's verdict is not a user's
    known = {a for (agents_,) in con.execute("SELECT feedback_agents FROM intermediate.int_interactions "
                                             "WHERE feedback_agents IS NOT NULL").fetchall() for a in agents_}
    assert all(part in known for agent in agents - {"heuristic-judge"} for part in agent.split(", "))
    assert {"grader/task_success", "user/thumbs"} <= {p for agent in agents for p in agent.split(", ")}
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


def test_embedding_leaves_the_process_logging_as_it_was():
    """The embedding library configures the root logger at INFO when imported: in a run's process that made GX
    and the HTTP client print their INFO lines into the step's log."""
    import subprocess
    import sys

    probe = ("import logging; from flywheel.embed import embed; embed(['a prompt']); "
             "root = logging.getLogger(); print(len(root.handlers), root.level)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", str(30)]  # no handler, WARNING: Python's defaults


def test_pairs_are_two_models_answering_the_same_conversation_spread_over_apps(warehouse_copy):
    con = warehouse_copy
    report = sampling.sample_pairwise(con, PAIRS, CONFIG["pairwise"], budget=30)
    assert report.queued == 30
    rows = con.execute("""
        SELECT q.model, q.model_b, a.cluster_id = q.cluster_id AND b.cluster_id = q.cluster_id,
               a.conversation_hash = b.conversation_hash, q.app_id
        FROM labeling.queue q
        JOIN intermediate.int_labeling_candidates a ON a.request_id = q.request_id
        JOIN intermediate.int_labeling_candidates b ON b.request_id = q.request_id_b""").fetchall()
    assert len(rows) == 30 and all(model != model_b and same and prompt for model, model_b, same, prompt, _ in rows)
    apps_with_pairs = con.execute("""SELECT count(DISTINCT app_id) FROM intermediate.int_labeling_candidates
                                     WHERE cluster_n_models >= 2""").fetchone()[0]
    assert len({app for *_, app in rows}) == apps_with_pairs
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


def test_the_control_sample_estimates_each_models_mean_outcome_without_bias(tmp_path):
    """On simulated traffic with known quality per model, the control sample's weighted estimate of each model's
    mean feedback score falls within three standard errors of the population's."""
    import math

    from flywheel.settings import Home
    from flywheel.simulate import simulate
    from pipelines.launch import run_main_job

    home = Home(tmp_path / "home").ensure()
    simulate(home.landing / "sim.jsonl", 6_000, days=2, seed=3, malformed_rate=0)
    assert run_main_job(home, labeling=False).success
    from flywheel import warehouse

    with warehouse.session(home) as con:
        sampling.sample_response_review(con, REVIEW, {"budget": 900, "strategies": {"control": 1.0}, "seed": 1})
        rows = con.execute("""
            WITH population AS (
                SELECT model, avg(feedback_score) AS mean, stddev_pop(feedback_score) AS sd, count(*) AS n
                FROM intermediate.int_labeling_candidates WHERE feedback_score IS NOT NULL GROUP BY 1),
            sample AS (
                SELECT c.model, sum(c.feedback_score / q.inclusion_probability) / sum(1 / q.inclusion_probability)
                           AS estimate, count(*) AS n
                FROM labeling.queue q JOIN intermediate.int_labeling_candidates c USING (request_id)
                WHERE q.strategy = 'control' AND c.feedback_score IS NOT NULL GROUP BY 1)
            SELECT p.model, p.mean, p.sd, p.n, s.estimate, s.n FROM population p LEFT JOIN sample s USING (model)
        """).fetchall()
    assert len(rows) >= 5
    for model, mean, sd, population, estimate, n in rows:
        assert n and n >= 20, f"{model} was hardly sampled ({n})"  # no model left out
        error = sd / math.sqrt(n) * math.sqrt(1 - n / population)
        assert abs(estimate - mean) <= 3 * error + 1e-9, (model, mean, estimate, error)
