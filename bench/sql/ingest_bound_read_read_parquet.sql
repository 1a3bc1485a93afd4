-- bench/ingest_bound_ids.py: the file's prompts read, only their lengths summed, nothing stored
-- (see ingest_bound_hash_read_parquet.sql).
SELECT sum(length(prompt)) FROM read_parquet($path);
