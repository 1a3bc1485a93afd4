-- Staged records whose key is already stored with different values.
SELECT s._idx,
       'conflicts with the stored record from ingest run ' || o.ingest_run_id AS reason
FROM staged s
JOIN outcomes o USING (source, sample_key, model)
WHERE o.quality IS DISTINCT FROM s.quality
   OR o.cost_usd IS DISTINCT FROM s.cost_usd
   OR o.prompt_id IS DISTINCT FROM s.prompt_id;
