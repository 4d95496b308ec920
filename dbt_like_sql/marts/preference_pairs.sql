-- description: Chosen and rejected answers to the same prompt (or near-duplicate cluster), from three sources:
-- pairwise labels in Argilla (the majority's choice, ties left out), corrections (the corrected answer over the
-- original), and scores (within a cluster, the best-scored answer over the worst, from different models, when
-- their scores differ by at least preferences.min_margin). Identical texts make no pair. The prompt is the chosen
-- answer's, and must be one the answers can follow.
-- Pairs are found on narrow rows (ids, model, score, a hash of the answer's text); the texts, messages and tools
-- are read for the pairs that remain, by request_id: carrying every answer's texts through the pairing made
-- DuckDB spill gigabytes of text at 10M rows.
WITH answers AS (
    SELECT i.request_id, i.model, m.cluster_id, s.quality_score, md5(i.response_text) AS text_hash
    FROM intermediate.int_interactions i
    JOIN intermediate.int_cluster_members m USING (request_id)
    JOIN intermediate.int_signals s USING (request_id)
    JOIN curation.splits sp USING (request_id)
    WHERE i.status = 'ok' AND coalesce(trim(i.response_text), '') <> ''
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
-- Each pair's two answers are found by one join, as two rows pivoted back into one: joining the answers twice
-- (chosen, rejected) with a condition between the two let the planner pair every answer with every other first
-- (a nested loop over all answers squared), which it chose on the lake, where it knows less of the tables' sizes.
sides AS (
    SELECT chosen_id, rejected_id, pair_source, margin,
           unnest([chosen_id, rejected_id]) AS request_id, unnest([true, false]) AS is_chosen
    FROM (SELECT * FROM labeled UNION ALL SELECT * FROM by_score)
),
paired AS (
    SELECT s.chosen_id, s.rejected_id, s.pair_source, s.margin,
           any_value(a.text_hash) FILTER (WHERE s.is_chosen) AS chosen_hash,
           any_value(a.text_hash) FILTER (WHERE NOT s.is_chosen) AS rejected_hash,
           any_value(a.model) FILTER (WHERE s.is_chosen) AS chosen_model,
           any_value(a.model) FILTER (WHERE NOT s.is_chosen) AS rejected_model
    FROM sides s JOIN answers a USING (request_id)
    GROUP BY s.chosen_id, s.rejected_id, s.pair_source, s.margin
    HAVING bool_or(s.is_chosen) AND bool_or(NOT s.is_chosen)
),
texts AS (  -- the answers' texts, read once for both sides of the remaining pairs
    SELECT i.request_id, i.response_text
    FROM intermediate.int_interactions i
    SEMI JOIN (SELECT unnest([chosen_id, rejected_id]) AS request_id FROM paired) USING (request_id)
),
pairs AS (
    SELECT p.chosen_id, p.rejected_id, p.pair_source, p.margin, c.response_text AS chosen, r.response_text AS rejected,
           p.chosen_model, p.rejected_model
    FROM paired p
    JOIN texts c ON c.request_id = p.chosen_id
    JOIN texts r ON r.request_id = p.rejected_id
    WHERE (p.chosen_model <> p.rejected_model OR p.pair_source = 'human_pairwise') AND p.chosen_hash <> p.rejected_hash
    UNION ALL
    SELECT i.request_id, i.request_id, s.correction_source || '_correction', 1.0, s.correction, i.response_text,
           s.correction_source, i.model
    FROM intermediate.int_interactions i
    JOIN intermediate.int_signals s USING (request_id)
    SEMI JOIN answers USING (request_id)
    WHERE s.correction IS NOT NULL AND s.correction <> i.response_text
)
SELECT
    md5(p.chosen_id || '|' || p.rejected_id || '|' || p.pair_source) AS pair_id,
    m.cluster_id,
    sp.split,
    a.app_id,
    a.messages,
    a.tools,
    p.chosen,
    p.rejected,
    p.chosen_id AS chosen_request_id,
    p.rejected_id AS rejected_request_id,
    p.chosen_model,
    p.rejected_model,
    p.pair_source,
    p.margin
FROM pairs p
JOIN intermediate.int_interactions a ON a.request_id = p.chosen_id
JOIN intermediate.int_cluster_members m ON m.request_id = p.chosen_id
JOIN curation.splits sp ON sp.request_id = p.chosen_id
-- a prompt the answers can follow: it ends with the user (or a tool), no message is empty, it fits the token limit
WHERE a.messages[-1].role IN ('user', 'tool')
  AND NOT list_bool_or(list_transform(a.messages, m -> empty_message(m)))
  AND estimate_tokens(message_chars(a.messages) + greatest(length(p.chosen), length(p.rejected)), len(a.messages))
      <= getvariable('sft_token_limit')
QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY a.request_id) = 1
