-- The rows of staging.stg_feedback that stg_feedback.json validates (all of them), with whether a feedback event
-- still has no interaction 24 hours after it arrived.
SELECT f.feedback_id, f.request_id, f.score,
       i.request_id IS NULL AND f.ts < now() - INTERVAL 24 HOURS AS orphan_past_grace
FROM staging.stg_feedback f
LEFT JOIN (SELECT DISTINCT request_id FROM raw.interactions) i USING (request_id)
