-- materialized: view
-- description: Every interaction with the signals labeling samples on: its cluster (size, first day, how many models
-- answered it and how far their feedback differs), user-feedback conflicts, and a heuristic judge. The judge is a
-- cheap prior, not a verdict: judge_score is P(good) from rules (error, empty, refusal, broken formatting, cut off),
-- judge_issues the issue labels those rules suggest. Texts are the redacted ones from staging.
WITH members AS (
    SELECT i.*, m.cluster_id, m.cluster_size, m.is_representative
    FROM intermediate.int_interactions i
    JOIN intermediate.int_cluster_members m USING (request_id)
),
-- from the narrow columns it needs, not from `members`: read twice, `members` would be materialized whole, texts
-- and all (at 10M interactions, most of this model's time)
clusters AS (
    SELECT m.cluster_id,
           min(m.event_date) AS cluster_first_date,
           count(DISTINCT m.model) AS cluster_n_models,
           max(f.feedback_score) - min(f.feedback_score) AS cluster_feedback_spread
    FROM intermediate.int_cluster_members m
    LEFT JOIN intermediate.int_feedback_by_request f USING (request_id)
    GROUP BY m.cluster_id
),
judged AS (
    SELECT
        m.*,
        m.status <> 'ok' OR m.error IS NOT NULL AS judge_error,
        coalesce(trim(m.response_text), '') = '' AND m.response.tool_calls IS NULL AS judge_empty,
        m.response.refusal IS NOT NULL
            OR regexp_matches(lower(coalesce(m.response_text, '')),
                              '(^|\W)(i can''t|i cannot|i''m sorry|i am sorry|as an ai|i''m unable|i am unable|i won''t)')
            AS judge_refused,
        (length(coalesce(m.response_text, '')) - length(replace(coalesce(m.response_text, ''), '```', ''))) // 3 % 2 = 1
            AS judge_bad_format,
        m.response.finish_reason = 'length' AS judge_cut_off
    FROM members m
)
SELECT
    j.request_id,
    j.event_date,
    j.ts,
    j.app_id,
    j.model,
    j.status,
    j.error,
    j.messages,
    j.response,
    j.prompt_text,
    j.response_text,
    j.cost_usd,
    j.latency_ms,
    j.n_feedback,
    j.feedback_score,
    j.thumbs_up,
    j.thumbs_down,
    j.rating_score,
    j.task_success,
    j.correction,
    j.feedback_agents,
    md5(coalesce(j.conversation_text, '')) AS conversation_hash,
    j.thumbs_up > 0 AND j.thumbs_down > 0 AS feedback_conflict,
    j.cluster_id,
    j.cluster_size,
    j.is_representative,
    c.cluster_first_date,
    c.cluster_n_models,
    c.cluster_feedback_spread,
    CASE
        WHEN j.judge_error OR j.judge_empty THEN 0.05
        WHEN j.judge_refused THEN 0.2
        WHEN j.judge_cut_off THEN 0.35
        WHEN j.judge_bad_format THEN 0.45
        WHEN length(coalesce(j.response_text, '')) < 20 THEN 0.5
        ELSE 0.7
    END AS judge_score,
    list_filter([
        CASE WHEN j.judge_refused THEN 'refused' END,
        CASE WHEN j.judge_bad_format THEN 'formatting' END,
        CASE WHEN j.judge_cut_off OR j.judge_empty THEN 'incomplete' END,
        CASE WHEN j.judge_error THEN 'wrong' END
    ], x -> x IS NOT NULL) AS judge_issues
FROM judged j
JOIN clusters c USING (cluster_id)
