SELECT s._idx,
       'query_id already stored with another prompt (ingest run ' || b.ingest_run_id || ')' AS reason
FROM staged s
JOIN backlog b USING (query_id)
WHERE b.prompt_id IS DISTINCT FROM s.prompt_id;
