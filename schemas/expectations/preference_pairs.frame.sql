-- The rows of marts.preference_pairs that preference_pairs.json validates (all of them).
SELECT pair_id, split, chosen IS DISTINCT FROM rejected AS answers_differ, pair_source, margin
FROM marts.preference_pairs
