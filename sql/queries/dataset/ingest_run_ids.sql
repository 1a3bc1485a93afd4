SELECT run_id FROM ingest_runs WHERE kind IN ('routerbench', 'logs') ORDER BY started_at, run_id;
