-- Reader rejects keep the offending line as text, which need not be JSON (a truncated line): such text is
-- stored as a JSON string rather than failing the cast (and with it the whole ingest).
INSERT INTO quarantine (ingest_run_id, kind, file, row_number, row_key, raw, reason, quarantined_at)
SELECT $run_id, $kind, $file, row_number, row_key,
       CASE WHEN raw IS NULL THEN NULL WHEN json_valid(raw) THEN raw::JSON ELSE to_json(raw) END,
       reason, $now
FROM staged_quarantine;
