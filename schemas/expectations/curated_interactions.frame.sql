-- The rows of marts.curated_interactions that curated_interactions.json validates (all of them).
SELECT request_id, cluster_id, split, quality_score, quality_source,
       coalesce(trim(response_text), '') <> '' OR response.tool_calls IS NOT NULL AS has_answer
FROM marts.curated_interactions
