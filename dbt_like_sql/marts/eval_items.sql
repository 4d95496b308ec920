-- description: An eval set from real traffic that stands in for each app's workload: the held-out prompts that
-- flywheel/evalsets.py chose (curation.eval_selection: per app, eval.share of its prompts from the eval.pool
-- splits, stratified by difficulty, most items where models disagree). `weight` is the share of the app's traffic
-- an item stands for: a model's weighted mean outcome over an app's items estimates its accuracy on that app.
-- Each item has its reference answer where one is known (a correction, else the best answer a person or a
-- verified outcome scored at or above the quality bar) and every model's outcome on it.
WITH held_out AS (
    SELECT cluster_id, min(split) AS split, min(app_id) AS app_id, min(prompt_request_id) AS prompt_request_id,
           list({'model': model, 'quality_score': quality_score, 'quality_source': quality_source,
                 'meets_bar': meets_bar, 'cost_usd': cost_usd, 'latency_ms': latency_ms} ORDER BY model)
               AS model_outcomes
    FROM marts.router_examples
    GROUP BY cluster_id
),
known_answers AS (
    SELECT cluster_id,
           arg_max(response_text, (corrected, quality_score, request_id)) AS reference_answer,
           arg_max(quality_source, (corrected, quality_score, request_id)) AS reference_source
    FROM marts.curated_interactions
    WHERE corrected OR (quality_source IN ('human', 'outcome') AND quality_score >= getvariable('quality_bar'))
    GROUP BY cluster_id
)
SELECT
    h.cluster_id,
    h.split,
    h.app_id,
    h.prompt_request_id AS request_id,
    e.stratum AS difficulty_level,
    e.weight,
    i.messages,
    i.tools,
    r.reference_answer,
    r.reference_source,
    h.model_outcomes
FROM curation.eval_selection e
JOIN held_out h USING (cluster_id)
JOIN intermediate.int_interactions i ON i.request_id = h.prompt_request_id
LEFT JOIN known_answers r USING (cluster_id)
