-- The ingest bench's lower bound (bench.perf.ingest_bound), step 1 of 3: the file's rows with each prompt's id
-- (first 32 hex chars of sha256, as the ingest computes it), in a temporary table of this transaction.
CREATE TEMP TABLE bound_staged AS
SELECT *, substr(sha256(prompt), 1, 32) AS prompt_id FROM read_parquet($path);
