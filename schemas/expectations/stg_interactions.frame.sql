-- The rows of staging.stg_interactions that stg_interactions.json validates: the days just built ($first..$last),
-- with the derived columns its expectations read.
SELECT s.request_id, s.app_id, s.model, s.ts, s.cost_usd,
       s.prompt_text,
       list_bool_and(list_transform(s.messages, m -> m.role IN ('system', 'developer', 'user', 'assistant', 'tool',
                                                               'function'))) AS roles_valid,
       -- the conversation opens with instructions or the user, and a tool answers an assistant call
       (list_filter(s.messages, m -> m.role NOT IN ('system', 'developer'))[1].role = 'user')
         AND list_bool_and(list_transform(range(1, len(s.messages) + 1), i -> s.messages[i].role <> 'tool'
               OR (i > 1 AND s.messages[i - 1].role IN ('assistant', 'tool'))))
         AS message_order_valid,
       p.model IS NOT NULL AS known_model
FROM staging.stg_interactions s LEFT JOIN reference.model_prices p ON p.model = s.model
WHERE s.event_date BETWEEN $first AND $last
