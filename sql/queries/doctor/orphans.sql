-- Rows that point at something missing (the schema has no foreign keys: ingest and routing keep them whole).
SELECT 'outcomes without a prompt' AS what, count(*) AS n
FROM outcomes o WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = o.prompt_id)
UNION ALL
SELECT 'backlog queries without a prompt', count(*)
FROM backlog b WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = b.prompt_id)
UNION ALL
SELECT 'embeddings without a prompt', count(*)
FROM embeddings e WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = e.prompt_id)
UNION ALL
SELECT 'decisions without a backlog query', count(*)
FROM routing_decisions d WHERE NOT EXISTS (SELECT 1 FROM backlog b WHERE b.query_id = d.query_id)
UNION ALL
SELECT 'outcomes without an ingest run', count(*)
FROM outcomes o WHERE NOT EXISTS (SELECT 1 FROM ingest_runs r WHERE r.run_id = o.ingest_run_id)
UNION ALL
SELECT 'backlog queries without an ingest run', count(*)
FROM backlog b WHERE NOT EXISTS (SELECT 1 FROM ingest_runs r WHERE r.run_id = b.ingest_run_id)
UNION ALL
SELECT 'quarantine rows without an ingest run', count(*)
FROM quarantine q WHERE NOT EXISTS (SELECT 1 FROM ingest_runs r WHERE r.run_id = q.ingest_run_id);
