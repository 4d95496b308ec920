-- The rows of marts.sft_examples that sft_examples.json validates (all of them).
SELECT request_id, split, messages[-1].role AS last_role,
       corrected OR quality_score IS NOT NULL AS scored_or_corrected
FROM marts.sft_examples
