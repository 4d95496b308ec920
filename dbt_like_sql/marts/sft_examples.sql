-- description: Conversations fit for supervised fine-tuning, per app: curated answers at or above the bar
-- (sft.min_quality), or corrected by a person (sft.include_corrected), within the target model's token limit and
-- without an empty message. `messages` ends with the answer, in OpenAI chat format (tool calls as the model wrote
-- them). Tokens are flywheel's estimate: characters / 4, and 4 per message.
WITH examples AS (
SELECT
    request_id,
    cluster_id,
    split,
    app_id,
    model,
    list_append(messages, {'role': 'assistant', 'content': response.content, 'name': NULL::VARCHAR,
                           'tool_calls': response.tool_calls, 'tool_call_id': NULL::VARCHAR,
                           'refusal': NULL::VARCHAR}) AS messages,
    tools,
    quality_score,
    quality_source,
    corrected,
    tokens_in + coalesce(tokens_out, 0) AS tokens
FROM marts.curated_interactions
WHERE quality_score >= getvariable('sft_min_quality')
   OR (corrected AND getvariable('sft_include_corrected'))
)
SELECT * FROM examples
WHERE list_bool_and(list_transform(messages, m -> coalesce(trim(m.content), '') <> '' OR m.tool_calls IS NOT NULL
                                                  OR m.refusal IS NOT NULL))
  AND list_sum(list_transform(messages, m -> length(coalesce(m.content, '')) + length(coalesce(m.tool_calls::VARCHAR, ''))))
      // 4 + 4 * len(messages) <= getvariable('sft_token_limit')
