-- materialized: view
-- description: Every interaction's near-duplicate cluster (dedup.clusters), its size, and the cluster's representative.
-- Representative rule: the member with the best feedback score (no feedback ranks lowest), then the most recent, then
-- the smallest request_id. A view: it always agrees with dedup.clusters, whatever build was interrupted.
WITH members AS (
    SELECT c.cluster_id, i.request_id, i.event_date, i.ts, i.app_id, i.model, i.feedback_score
    FROM dedup.clusters c
    JOIN intermediate.int_interactions i USING (request_id)
),
ranked AS (
    SELECT *,
           count(*) OVER (PARTITION BY cluster_id) AS cluster_size,
           row_number() OVER (PARTITION BY cluster_id
                              ORDER BY coalesce(feedback_score, -1) DESC, ts DESC, request_id) AS rank_in_cluster
    FROM members
)
SELECT request_id, cluster_id, cluster_size, rank_in_cluster = 1 AS is_representative, event_date, app_id, model
FROM ranked
