-- description: Every interaction's quality signals by source, each a score in [0, 1] (1 = good), and the one that
-- wins under schemas/curation.yaml's signal_precedence. human: Argilla response-review labels of the latest round
-- (mean rating, else the majority verdict); outcome: verified task outcomes; user: thumbs and ratings; judge: a
-- judge's feedback, else the heuristic judge. A correction (Argilla's, else the user's) is kept, redacted.
WITH review AS (
    SELECT q.request_id, q.round, l.answers, l.updated_at, l.user_id
    FROM labeling.labels l
    JOIN labeling.queue q USING (record_id)
    WHERE q.kind = 'response_review' AND l.status = 'submitted'
    QUALIFY q.round = max(q.round) OVER (PARTITION BY q.request_id)
),
human AS (
    SELECT request_id,
           count(*) AS human_annotators,
           exact_avg((TRY_CAST(answers->>'quality' AS DOUBLE) - 1) / 4) AS quality_mean,
           count(*) FILTER (WHERE answers->>'verdict' = 'good') AS good,
           count(*) FILTER (WHERE answers->>'verdict' = 'bad') AS bad,
           arg_max(nullif(trim(answers->>'correction'), ''), (updated_at, user_id))
               FILTER (WHERE nullif(trim(answers->>'correction'), '') IS NOT NULL) AS correction
    FROM review
    GROUP BY request_id
),
feedback AS (
    SELECT request_id,
           exact_avg(CASE WHEN feedback_type = 'task_success' THEN score END) AS outcome_score,
           exact_avg(CASE WHEN feedback_type IN ('thumbs', 'rating') AND source NOT ILIKE '%judge%' THEN score END) AS user_score,
           exact_avg(CASE WHEN feedback_type IN ('thumbs', 'rating') AND source ILIKE '%judge%' THEN score END) AS judge_feedback,
           arg_max(correction, (ts, feedback_id)) FILTER (WHERE feedback_type = 'correction') AS user_correction
    FROM staging.stg_feedback
    GROUP BY request_id
),
scores AS (
    SELECT c.request_id,
           coalesce(h.quality_mean, CASE WHEN h.good + h.bad > 0 THEN h.good / (h.good + h.bad) END) AS human_score,
           CASE WHEN h.good > h.bad THEN 'good' WHEN h.bad > h.good THEN 'bad' END AS human_verdict,
           coalesce(h.human_annotators, 0) AS human_annotators,
           f.outcome_score,
           f.user_score,
           coalesce(f.judge_feedback, c.judge_score) AS judge_score,
           CASE WHEN f.judge_feedback IS NOT NULL THEN 'feedback' ELSE 'heuristic' END AS judge_kind,
           redact(h.correction) AS human_correction,
           f.user_correction
    FROM intermediate.int_labeling_candidates c
    LEFT JOIN human h USING (request_id)
    LEFT JOIN feedback f USING (request_id)
),
ranked AS (
    SELECT *,
           list_sort(list_filter([
               {'rank': list_position(getvariable('signal_precedence'), 'human'), 'source': 'human', 'score': human_score},
               {'rank': list_position(getvariable('signal_precedence'), 'outcome'), 'source': 'outcome', 'score': outcome_score},
               {'rank': list_position(getvariable('signal_precedence'), 'user'), 'source': 'user', 'score': user_score},
               {'rank': list_position(getvariable('signal_precedence'), 'judge'), 'source': 'judge', 'score': judge_score}
           ], s -> s.rank IS NOT NULL AND s.score IS NOT NULL))[1] AS best
    FROM scores
)
SELECT * EXCLUDE (best),
       best.score AS quality_score,
       best.source AS quality_source,
       coalesce(human_correction, user_correction) AS correction,
       CASE WHEN human_correction IS NOT NULL THEN 'human' WHEN user_correction IS NOT NULL THEN 'user' END
           AS correction_source
FROM ranked
