-- Staged queries whose query_id is already stored with another prompt (staged_hits: backlog_hits.sql).
SELECT s._idx,
       'query_id already stored with another prompt (ingest run ' || b.ingest_run_id || ')' AS reason
FROM staged_hits h
JOIN staged s USING (_idx)
JOIN backlog b ON b.rowid = h.stored_row
WHERE b.prompt_id IS DISTINCT FROM s.prompt_id;
