-- Ingest runs whose counts do not add up: rows_in = rows_ok + rows_quarantined, and as many quarantine rows
-- as rows_quarantined.
SELECT r.run_id, r.kind, r.file, r.rows_in, r.rows_ok, r.rows_quarantined, coalesce(q.n, 0) AS quarantine_rows
FROM ingest_runs r
LEFT JOIN (SELECT ingest_run_id, count(*) AS n FROM quarantine GROUP BY ALL) q ON q.ingest_run_id = r.run_id
WHERE r.rows_in <> r.rows_ok + r.rows_quarantined
   OR coalesce(q.n, 0) <> r.rows_quarantined
ORDER BY r.started_at, r.run_id;
