-- bench/ingest_bound_ids.py: the file's prompts read and their ids computed (first 32 hex chars of sha256),
-- nothing stored; less ingest_bound_read_read_json.sql's time, the hashing's share of the lower bound.
SELECT count(substr(sha256(prompt), 1, 32)) FROM read_json($path);
