-- Staged records whose key is already stored with different values (staged_hits: outcome_hits.sql).
SELECT s._idx,
       'conflicts with the stored record from ingest run ' || o.ingest_run_id AS reason
FROM staged_hits h
JOIN staged s USING (_idx)
JOIN outcomes o ON o.rowid = h.stored_row
WHERE o.quality IS DISTINCT FROM s.quality
   OR o.cost_usd IS DISTINCT FROM s.cost_usd
   OR o.prompt_id IS DISTINCT FROM s.prompt_id;
