-- The staged queries whose query_id is not stored yet (staged_hits: backlog_hits.sql).
INSERT INTO backlog (query_id, prompt_id, task, submitted_at, ingest_run_id, ingested_at)
SELECT query_id, prompt_id, task, coalesce(submitted_at, $now), $run_id, $now
FROM staged s
WHERE NOT EXISTS (SELECT 1 FROM staged_hits h WHERE h._idx = s._idx);
