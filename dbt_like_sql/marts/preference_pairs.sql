-- description: Chosen and rejected answers to the same prompt (or near-duplicate cluster), from three sources:
-- pairwise labels in Argilla (the majority's choice, ties left out), corrections (the corrected answer over the
-- original), and scores (within a cluster, the best-scored answer over the worst, from different models, when
-- their scores differ by at least preferences.min_margin). Identical texts make no pair. The prompt is the chosen
-- answer's, and must be one the answers can follow.
-- `answers` holds the narrow columns that pair answers up; texts are read for the paired answers only (`texts` is
-- inlined where it is joined: materialized, it would copy every interaction's messages, most of this model's time
-- at 10M rows).
WITH answers AS (
    SELECT i.request_id, i.app_id, i.model, m.cluster_id, s.quality_score, s.quality_source, s.correction,
           s.correction_source, sp.split
    FROM intermediate.int_interactions i
    JOIN intermediate.int_cluster_members m USING (request_id)
    JOIN intermediate.int_signals s USING (request_id)
    JOIN curation.splits sp USING (request_id)
    WHERE i.status = 'ok' AND coalesce(trim(i.response_text), '') <> ''
),
texts AS NOT MATERIALIZED (
    SELECT request_id, messages, tools, response_text FROM intermediate.int_interactions
),
votes AS (
    SELECT q.request_id AS a, q.request_id_b AS b,
           count(*) FILTER (WHERE l.answers->>'preference' = 'a') AS for_a,
           count(*) FILTER (WHERE l.answers->>'preference' = 'b') AS for_b
    FROM labeling.labels l
    JOIN labeling.queue q USING (record_id)
    WHERE q.kind = 'pairwise' AND l.status = 'submitted'
    GROUP BY ALL
),
labeled AS (
    SELECT CASE WHEN for_a > for_b THEN a ELSE b END AS chosen_id,
           CASE WHEN for_a > for_b THEN b ELSE a END AS rejected_id,
           'human_pairwise' AS pair_source,
           abs(for_a - for_b) / (for_a + for_b) AS margin
    FROM votes WHERE for_a <> for_b
),
by_score AS (
    SELECT arg_max(request_id, (quality_score, request_id)) AS chosen_id,
           arg_min(request_id, (quality_score, request_id)) AS rejected_id,
           'scores' AS pair_source, max(quality_score) - min(quality_score) AS margin
    FROM answers
    WHERE quality_score IS NOT NULL
    GROUP BY cluster_id
    HAVING count(DISTINCT model) > 1 AND max(quality_score) - min(quality_score) >= getvariable('pref_min_margin')
),
pairs AS (
    SELECT c.request_id AS chosen_id, r.request_id AS rejected_id, p.pair_source, p.margin,
           ct.response_text AS chosen, rt.response_text AS rejected, c.model AS chosen_model, r.model AS rejected_model
    FROM (SELECT * FROM labeled UNION ALL SELECT * FROM by_score) p
    JOIN answers c ON c.request_id = p.chosen_id
    JOIN answers r ON r.request_id = p.rejected_id
    JOIN texts ct ON ct.request_id = p.chosen_id
    JOIN texts rt ON rt.request_id = p.rejected_id
    WHERE (c.model <> r.model OR p.pair_source = 'human_pairwise') AND ct.response_text <> rt.response_text
    UNION ALL
    SELECT a.request_id, a.request_id, a.correction_source || '_correction', 1.0, a.correction, t.response_text,
           a.correction_source, a.model
    FROM answers a JOIN texts t USING (request_id)
    WHERE a.correction IS NOT NULL AND a.correction <> t.response_text
)
SELECT
    md5(p.chosen_id || '|' || p.rejected_id || '|' || p.pair_source) AS pair_id,
    a.cluster_id,
    a.split,
    a.app_id,
    t.messages,
    t.tools,
    p.chosen,
    p.rejected,
    p.chosen_id AS chosen_request_id,
    p.rejected_id AS rejected_request_id,
    p.chosen_model,
    p.rejected_model,
    p.pair_source,
    p.margin
FROM pairs p
JOIN answers a ON a.request_id = p.chosen_id
JOIN texts t ON t.request_id = p.chosen_id
-- a prompt the answers can follow: it ends with the user (or a tool), no message is empty, it fits the token limit
WHERE t.messages[-1].role IN ('user', 'tool')
  AND NOT list_bool_or(list_transform(t.messages, m -> empty_message(m)))
  AND estimate_tokens(message_chars(t.messages) + greatest(length(p.chosen), length(p.rejected)), len(t.messages))
      <= getvariable('sft_token_limit')
QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY a.request_id) = 1
