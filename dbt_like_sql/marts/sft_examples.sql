-- description: Conversations fit for supervised fine-tuning, per app: curated answers at or above the bar
-- (sft.min_quality), or corrected by a person (sft.include_corrected). `messages` ends with the answer, in OpenAI
-- chat format (tool calls as the model wrote them).
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
