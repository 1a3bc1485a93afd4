-- bench/ingest_bound_ids.py: ingest_bound_stage_read_json.sql with the id as a 16-byte integer (UHUGEINT: the same
-- 128 bits as the first 32 hex characters of sha256).
CREATE TEMP TABLE bound_staged AS
SELECT *, ('0x' || substr(sha256(prompt), 1, 32))::UHUGEINT AS prompt_id FROM read_json($path);
