-- materialized: view
-- description: How many items of each kind (EMAIL, API_KEY, ...) were redacted from each day's interactions, per field.
WITH found AS (
    SELECT event_date, 'prompt' AS field, unnest(prompt_redactions) AS kind FROM staging.stg_interactions
    UNION ALL
    SELECT event_date, 'response', unnest(response_redactions) FROM staging.stg_interactions
    UNION ALL
    SELECT event_date, 'error', unnest(error_redactions) FROM staging.stg_interactions
)
SELECT event_date, field, kind, count(*) AS redactions
FROM found
GROUP BY ALL
