-- description: One row per near-duplicate cluster: its best member that passed the checks (answered without error,
-- a non-empty answer or tool calls), redacted, with its quality signal and where it came from (int_signals). A
-- correction replaces the response, marked `corrected`, the original kept beside it. `split` is the cluster's.
-- The best member of each cluster is chosen on a few narrow columns, and only the winners' texts are read: ranking
-- whole rows (messages and all) would sort every interaction's texts, most of this model's time at 10M rows.
WITH eligible AS (
    SELECT i.request_id, m.cluster_id, m.cluster_size, i.ts, s.correction IS NOT NULL AS has_correction,
           s.quality_score
    FROM intermediate.int_interactions i
    JOIN intermediate.int_cluster_members m USING (request_id)
    JOIN intermediate.int_signals s USING (request_id)
    JOIN curation.splits sp USING (request_id)
    WHERE i.status = 'ok' AND i.error IS NULL
      AND (coalesce(trim(i.response_text), '') <> '' OR i.response.tool_calls IS NOT NULL)
),
winners AS (
    SELECT request_id, cluster_id, cluster_size FROM eligible
    QUALIFY row_number() OVER (PARTITION BY cluster_id
                               ORDER BY has_correction DESC, coalesce(quality_score, -1) DESC, ts DESC,
                                        request_id) = 1
),
best AS (
    SELECT i.* EXCLUDE (correction), w.cluster_id, w.cluster_size, s.quality_score AS signal_score,
           s.quality_source AS signal_source,
           s.human_score, s.human_verdict, s.human_annotators, s.outcome_score, s.user_score, s.judge_score,
           s.correction, s.correction_source, sp.split
    FROM winners w
    JOIN intermediate.int_interactions i USING (request_id)
    JOIN intermediate.int_signals s USING (request_id)
    JOIN curation.splits sp USING (request_id)
)
SELECT
    request_id,
    cluster_id,
    cluster_size,
    split,
    event_date,
    ts,
    app_id,
    model,
    provider,
    messages,
    tools,
    CASE WHEN correction IS NOT NULL
         THEN {'role': 'assistant', 'content': correction, 'tool_calls': NULL::JSON, 'refusal': NULL::VARCHAR,
               'finish_reason': 'stop'}
         ELSE response END AS response,
    coalesce(correction, response_text) AS response_text,
    correction IS NOT NULL AS corrected,
    correction_source,
    CASE WHEN correction IS NOT NULL THEN response_text END AS original_response_text,
    CASE WHEN correction IS NOT NULL THEN 1.0 ELSE signal_score END AS quality_score,
    CASE WHEN correction IS NOT NULL THEN correction_source || '_correction' ELSE signal_source END AS quality_source,
    signal_score AS original_quality_score,
    human_score,
    human_verdict,
    human_annotators,
    outcome_score,
    user_score,
    judge_score,
    cost_usd,
    latency_ms,
    tokens_in,
    tokens_out
FROM best
