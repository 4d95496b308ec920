-- materialized: view
-- description: Each interaction with every feedback it has received so far (either arrival order). A view: late
-- feedback shows here as soon as int_feedback_by_request is rebuilt, and the texts are stored once, in staging.
SELECT
    i.*,
    system_prompt(i.messages) AS system_prompt,
    conversation_text(i.messages) AS conversation_text,
    i.response.content AS response_text,
    coalesce(f.n_feedback, 0) AS n_feedback,
    f.feedback_score,
    f.thumbs_up,
    f.thumbs_down,
    f.rating_score,
    f.task_success,
    f.correction,
    f.feedback_agents,
    f.last_feedback_at
FROM staging.stg_interactions i
LEFT JOIN intermediate.int_feedback_by_request f USING (request_id)
