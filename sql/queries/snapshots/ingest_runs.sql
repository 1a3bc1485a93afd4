SELECT * FROM ingest_runs;
