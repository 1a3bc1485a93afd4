SELECT run_id, file FROM ingest_runs WHERE sha256 = $sha256 AND kind = $kind ORDER BY started_at LIMIT 1;
