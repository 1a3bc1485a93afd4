-- Backlog queries whose newest decision was not made by this model version under this policy, computed once per
-- routing run (one pass over the decisions instead of one per batch). So a policy routed again after another one
-- (the nightly's after a what-if `routerctl route`, a price that returns to an earlier level) decides the backlog
-- again, and `latest_decisions` shows the policy routed last. With a NULL policy (what-if scenarios): the queries
-- this version has not decided under any policy. `embedded` says whether the query's prompt has a vector for the
-- encoder; `task` is '' when missing (what the predictor is given). Temporary: private to this connection, gone
-- at close.
CREATE OR REPLACE TEMP TABLE route_pending AS
WITH settled AS (
    SELECT query_id
    FROM routing_decisions
    GROUP BY query_id
    HAVING CASE WHEN $policy IS NULL THEN bool_or(model_version = $version)
                ELSE arg_max(model_version = $version AND policy = $policy, decided_at) END
)
SELECT b.query_id,
       b.prompt_id,
       coalesce(b.task, '') AS task,
       EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = b.prompt_id AND e.encoder = $encoder) AS embedded
FROM backlog b
WHERE NOT EXISTS (SELECT 1 FROM settled s WHERE s.query_id = b.query_id);
