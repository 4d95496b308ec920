-- description: One row per (prompt cluster, model): the model's known outcome on the cluster's prompts (mean quality
-- score and its usual source, mean cost, latency and tokens), whether it meets router.quality_bar, and the cluster's
-- label: the cheapest model that meets the bar (cost unknown counts as most expensive). Features of the prompt: app,
-- lengths, and the offline text embedding of the user's last message. Any number of models; one answer is enough.
-- Failed calls are left out: they say nothing of a model's quality.
WITH answers AS (
    SELECT m.cluster_id, i.request_id, i.ts, i.app_id, i.model, i.prompt_text, length(i.prompt_text) AS prompt_chars,
           i.n_messages,
           i.cost_usd, i.latency_ms, i.tokens_in, i.tokens_out, s.quality_score, s.quality_source, sp.split
    FROM intermediate.int_interactions i
    JOIN intermediate.int_cluster_members m USING (request_id)
    JOIN intermediate.int_signals s USING (request_id)
    JOIN curation.splits sp USING (request_id)
    WHERE i.error IS NULL
),
usual_source AS (  -- the most frequent source of a model's scores on the cluster (ties: the last by name)
    SELECT cluster_id, model, arg_max(quality_source, (n, quality_source)) AS quality_source
    FROM (SELECT cluster_id, model, quality_source, count(*) AS n
          FROM answers WHERE quality_source IS NOT NULL GROUP BY ALL)
    GROUP BY ALL
),
per_model AS (
    SELECT cluster_id, model,
           count(*) AS answers,
           exact_avg(quality_score) AS quality_score,
           any_value(u.quality_source) AS quality_source,
           exact_avg(cost_usd) AS cost_usd,
           exact_avg(latency_ms) AS latency_ms,
           exact_avg(tokens_in) AS tokens_in,
           exact_avg(tokens_out) AS tokens_out,
           exact_avg(quality_score) >= getvariable('router_quality_bar') AS meets_bar
    FROM answers
    LEFT JOIN usual_source u USING (cluster_id, model)
    GROUP BY cluster_id, model
),
prompts AS (  -- the cluster's prompt: its earliest member's
    SELECT cluster_id, arg_min(request_id, (ts, request_id)) AS prompt_request_id,
           arg_min(app_id, (ts, request_id)) AS app_id, arg_min(prompt_text, (ts, request_id)) AS prompt_text,
           arg_min(prompt_chars, (ts, request_id)) AS prompt_chars,
           arg_min(n_messages, (ts, request_id)) AS n_messages, min(split) AS split,
           count(DISTINCT model) AS models_known
    FROM answers
    GROUP BY cluster_id
),
labels AS (
    SELECT cluster_id,
           arg_min(model, (coalesce(cost_usd, 'Infinity'::DOUBLE), model)) FILTER (WHERE meets_bar) AS cheapest_good_model
    FROM per_model
    GROUP BY cluster_id
)
SELECT
    p.cluster_id,
    p.split,
    p.app_id,
    p.prompt_request_id,
    pm.model,
    pm.answers,
    pm.quality_score,
    pm.quality_source,
    pm.meets_bar,
    pm.cost_usd,
    pm.latency_ms,
    pm.tokens_in,
    pm.tokens_out,
    l.cheapest_good_model,
    pm.model = l.cheapest_good_model AS is_cheapest_good,
    p.models_known,
    p.prompt_text,
    p.prompt_chars,
    p.n_messages,
    text_embedding(p.prompt_text)::FLOAT[] AS prompt_embedding  -- a list: a lake stores no fixed-size arrays
FROM per_model pm
JOIN prompts p USING (cluster_id)
JOIN labels l USING (cluster_id)
