-- materialized: incremental
-- partition_by: event_date
-- description: One row per interaction of the day, redacted: texts, hashes, tokens and cost filled in (and marked so).
-- Everything downstream reads this redacted text; the raw text stays in raw.interactions only. Every field that
-- holds text is redacted (names, tags, metadata and tool definitions too, values and keys); the keys of rows
-- (request_id) and the hashes of users and sessions are kept as they are.
WITH day AS (
    SELECT * REPLACE (
        redact(app_id) AS app_id,
        redact(model) AS model,
        redact(provider) AS provider,
        list_transform(tags, t -> redact(t)) AS tags,
        coalesce(TRY_CAST(redact(metadata::VARCHAR) AS JSON), to_json(redact(metadata::VARCHAR))) AS metadata,
        list_transform(messages, m -> struct_update(m,
            content := redact(m.content),
            "name" := redact(m."name"),
            refusal := redact(m.refusal),
            tool_calls := coalesce(TRY_CAST(redact(m.tool_calls::VARCHAR) AS JSON), to_json(redact(m.tool_calls::VARCHAR)))
        )) AS messages,
        struct_update(response,
            content := redact(response.content),
            refusal := redact(response.refusal),
            tool_calls := coalesce(TRY_CAST(redact(response.tool_calls::VARCHAR) AS JSON),
                                   to_json(redact(response.tool_calls::VARCHAR)))
        ) AS response,
        redact(error) AS error,
        coalesce(TRY_CAST(redact(tools::VARCHAR) AS JSON), to_json(redact(tools::VARCHAR))) AS tools
    )
    FROM raw.interactions WHERE event_date BETWEEN getvariable('first_day') AND getvariable('last_day')
),
texts AS (
    SELECT
        day.*,
        list_filter(messages, m -> m.role = 'user')[-1].content AS prompt_text,
        conversation_text(messages) AS conversation_text,
        response.content AS response_text,
        list_sum(list_transform(messages, m -> length(coalesce(m.content, '')))) AS prompt_chars
    FROM day
)
SELECT
    t.request_id,
    t.event_date,
    t.ts,
    t.app_id,
    t.model,
    coalesce(t.provider, p.provider) AS provider,
    p.canonical_model,
    t.status,
    t.error,
    t.prompt_text,  -- the conversation and response texts are derived in int_interactions, not stored twice
    t.messages,
    t.tools,  -- the tool definitions the request offered, as JSON
    t.response,
    len(t.messages) AS n_messages,
    md5(lower(trim(regexp_replace(coalesce(t.prompt_text, ''), '\s+', ' ', 'g')))) AS prompt_hash,
    md5(lower(trim(regexp_replace(coalesce(t.prompt_text, ''), '\s+', ' ', 'g'))) || chr(31)
        || lower(trim(regexp_replace(coalesce(t.response_text, ''), '\s+', ' ', 'g')))) AS prompt_response_hash,
    t.latency_ms,
    coalesce(t.tokens_in, estimate_tokens(t.prompt_chars, len(t.messages))) AS tokens_in,
    coalesce(t.tokens_out, CASE WHEN t.response IS NOT NULL
                                THEN estimate_tokens(length(coalesce(t.response_text, '')), 1) END) AS tokens_out,
    CASE WHEN t.tokens_in IS NOT NULL THEN 'logged' ELSE 'estimated' END AS tokens_source,
    coalesce(
        t.cost_usd,
        (coalesce(t.tokens_in, estimate_tokens(t.prompt_chars, len(t.messages))) * p.input_per_mtok
         + coalesce(t.tokens_out, estimate_tokens(length(coalesce(t.response_text, '')), 1)) * p.output_per_mtok)
        / 1e6
    ) AS cost_usd,
    CASE WHEN t.cost_usd IS NOT NULL THEN 'logged'
         WHEN p.model IS NOT NULL THEN 'price_table'
         ELSE 'unknown' END AS cost_source,
    t.user_hash,
    t.session_hash,
    t.tags,
    t.metadata,
    t.source_file,
    t.source_line,
    -- what redaction replaced, by kind (EMAIL, API_KEY, ...): intermediate.int_redaction_counts counts these
    redacted_kinds(t.conversation_text) AS prompt_redactions,
    redacted_kinds(t.response_text) AS response_redactions,
    redacted_kinds(t.error) AS error_redactions
FROM texts t
LEFT JOIN reference.model_prices p ON p.model = t.model
