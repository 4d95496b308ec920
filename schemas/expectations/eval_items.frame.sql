-- The rows of marts.eval_items that eval_items.json validates (all of them): none may share a cluster with a
-- training row.
SELECT e.cluster_id, e.weight, e.messages[-1].role AS last_role,
       NOT EXISTS (SELECT 1 FROM dedup.clusters c JOIN curation.splits s USING (request_id)
                   WHERE c.cluster_id = e.cluster_id AND s.split = 'train') AS held_out
FROM marts.eval_items e
