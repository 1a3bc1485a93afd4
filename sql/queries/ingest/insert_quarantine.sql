INSERT INTO quarantine (ingest_run_id, kind, file, row_number, row_key, raw, reason, quarantined_at)
SELECT $run_id, $kind, $file, row_number, row_key, raw::JSON, reason, $now FROM staged_quarantine;
