-- description: A held-out eval set from real traffic: prompts of test-split clusters, at most eval.max_per_app per
-- app (a stable pseudo-random choice, so every app and cluster size is represented as it occurs), each with its
-- reference answer where one is known (a correction, else the best answer a person or a verified outcome scored at
-- or above the quality bar) and every model's outcome on it.
WITH held_out AS (
    SELECT cluster_id, min(app_id) AS app_id, min(prompt_request_id) AS prompt_request_id,
           list({'model': model, 'quality_score': quality_score, 'quality_source': quality_source,
                 'cost_usd': cost_usd, 'latency_ms': latency_ms} ORDER BY model) AS model_outcomes
    FROM marts.router_examples
    WHERE split = 'test'
    GROUP BY cluster_id
),
chosen AS (
    SELECT * FROM held_out
    QUALIFY row_number() OVER (PARTITION BY app_id ORDER BY md5(cluster_id)) <= getvariable('eval_max_per_app')
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
    c.cluster_id,
    'test' AS split,
    c.app_id,
    c.prompt_request_id AS request_id,
    i.messages,
    i.tools,
    r.reference_answer,
    r.reference_source,
    c.model_outcomes
FROM chosen c
JOIN intermediate.int_interactions i ON i.request_id = c.prompt_request_id
LEFT JOIN known_answers r USING (cluster_id)
