-- materialized: incremental
-- partition_by: event_date
-- description: How many items of each kind (EMAIL, API_KEY, ...) were redacted from the day's interactions, per field.
WITH found AS (
    SELECT event_date, 'prompt' AS field, unnest(redacted_kinds(conversation_text)) AS kind
    FROM staging.stg_interactions WHERE event_date = getvariable('partition_date')
    UNION ALL
    SELECT event_date, 'response', unnest(redacted_kinds(response_text))
    FROM staging.stg_interactions WHERE event_date = getvariable('partition_date')
    UNION ALL
    SELECT event_date, 'error', unnest(redacted_kinds(error))
    FROM staging.stg_interactions WHERE event_date = getvariable('partition_date')
)
SELECT event_date, field, kind, count(*) AS redactions
FROM found
GROUP BY ALL
