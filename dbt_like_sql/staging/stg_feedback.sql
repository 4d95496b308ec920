-- description: One row per feedback event, with its signal normalized to a score in [0, 1] (1 = good).
SELECT
    feedback_id,
    request_id,
    event_date,
    ts,
    feedback_type,
    redact(source) AS source,
    thumb,
    rating,
    rating_scale,
    redact(correction) AS correction,
    success,
    redact(comment) AS comment,
    CASE feedback_type
        WHEN 'thumbs' THEN CASE thumb WHEN 'up' THEN 1.0 ELSE 0.0 END
        WHEN 'rating' THEN rating / coalesce(rating_scale, 5.0)
        WHEN 'task_success' THEN success::DOUBLE
        WHEN 'correction' THEN 0.0  -- a correction says the response needed one
    END AS score
FROM raw.feedback
