-- The rows of marts.router_examples that router_examples.json validates (all of them).
SELECT cluster_id || '|' || model AS row_key, quality_score, cheapest_good_model,
       count(DISTINCT split) OVER (PARTITION BY cluster_id) = 1 AS one_split_per_cluster,
       cheapest_good_model IS NULL
           OR cheapest_good_model IN (SELECT model FROM marts.router_examples r WHERE r.cluster_id = x.cluster_id)
           AS label_is_a_known_model
FROM marts.router_examples x
