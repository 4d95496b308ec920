-- description: Conversations fit for supervised fine-tuning, per app: curated answers at or above the bar
-- (sft.min_quality), or corrected by a person (sft.include_corrected), within the target model's token limit and
-- without an empty message. `messages` ends with the answer, in OpenAI chat format (tool calls as the model wrote
-- them). Tokens are flywheel's estimate (flywheel/pricing.py), as for costs.
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
WHERE NOT list_bool_or(list_transform(messages, m -> empty_message(m)))
  AND estimate_tokens(message_chars(messages), len(messages)) <= getvariable('sft_token_limit')
