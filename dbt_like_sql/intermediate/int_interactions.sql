-- materialized: incremental
-- partition_by: event_date
-- description: Each interaction of the day with every feedback it has received so far (either arrival order).
SELECT
    i.*,
    coalesce(f.n_feedback, 0) AS n_feedback,
    f.feedback_score,
    f.thumbs_up,
    f.thumbs_down,
    f.rating_score,
    f.task_success,
    f.correction,
    f.last_feedback_at
FROM staging.stg_interactions i
LEFT JOIN intermediate.int_feedback_by_request f USING (request_id)
WHERE i.event_date = getvariable('partition_date')
