-- Backlog queries not yet decided by this model version under this policy (by any policy when it is NULL),
-- computed once per routing run (one anti-join pass instead of one per batch). `embedded` says whether the query's prompt has a vector for the encoder; `task`
-- is '' when missing (what the predictor is given). Temporary: private to this connection, gone at close.
CREATE OR REPLACE TEMP TABLE route_pending AS
SELECT b.query_id,
       b.prompt_id,
       coalesce(b.task, '') AS task,
       EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = b.prompt_id AND e.encoder = $encoder) AS embedded
FROM backlog b
WHERE NOT EXISTS (
    SELECT 1 FROM routing_decisions d
    WHERE d.query_id = b.query_id AND d.model_version = $version AND ($policy IS NULL OR d.policy = $policy)
);
