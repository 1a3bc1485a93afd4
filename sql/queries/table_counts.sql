SELECT 'prompts' AS t, count(*) FROM prompts
UNION ALL SELECT 'outcomes', count(*) FROM outcomes
UNION ALL SELECT 'models', count(*) FROM models
UNION ALL SELECT 'backlog', count(*) FROM backlog
UNION ALL SELECT 'ingest_runs', count(*) FROM ingest_runs
UNION ALL SELECT 'quarantine', count(*) FROM quarantine
UNION ALL SELECT 'embeddings', count(*) FROM embeddings
UNION ALL SELECT 'prices', count(*) FROM prices;
