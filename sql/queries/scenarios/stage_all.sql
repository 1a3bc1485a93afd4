-- Every backlog query as the units to predict (same temp table and columns as routing/stage_pending), for a
-- scenario run when nothing is pending.
CREATE OR REPLACE TEMP TABLE route_pending AS
SELECT b.query_id,
       b.prompt_id,
       coalesce(b.task, '') AS task,
       EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = b.prompt_id AND e.encoder = $encoder) AS embedded
FROM backlog b;
