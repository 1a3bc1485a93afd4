-- The ingest bench's lower bound (bench.perf.ingest_bound), step 1 of 3, for JSONL: see the Parquet version.
CREATE TEMP TABLE bound_staged AS
SELECT *, substr(sha256(prompt), 1, 32) AS prompt_id FROM read_json($path);
