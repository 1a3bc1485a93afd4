INSERT INTO backlog (query_id, prompt_id, task, submitted_at, ingest_run_id, ingested_at)
SELECT query_id, prompt_id, task, coalesce(submitted_at, $now), $run_id, $now
FROM staged s
WHERE NOT EXISTS (SELECT 1 FROM backlog b WHERE b.query_id = s.query_id);
