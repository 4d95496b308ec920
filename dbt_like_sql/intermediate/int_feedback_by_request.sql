-- description: All feedback on each request, whenever it arrived: counts, mean score, verdicts, latest correction.
SELECT
    request_id,
    count(*) AS n_feedback,
    exact_avg(score) AS feedback_score,
    count(*) FILTER (WHERE thumb = 'up') AS thumbs_up,
    count(*) FILTER (WHERE thumb = 'down') AS thumbs_down,
    exact_avg(rating / coalesce(rating_scale, 5.0)) AS rating_score,
    bool_and(success) AS task_success,
    arg_max(correction, ts) FILTER (WHERE correction IS NOT NULL) AS correction,
    max(ts) AS last_feedback_at,
    list_distinct(list(source)) AS feedback_sources,
    -- who said it, and how: a suggestion in Argilla names its agent by these ("grader/task_success", ...)
    list_sort(list_distinct(list(source || '/' || feedback_type))) AS feedback_agents
FROM staging.stg_feedback
GROUP BY request_id
