-- The ingest bench's floor for JSONL: DuckDB's own reader into a table.
CREATE TABLE bench_floor AS SELECT * FROM read_json($path);
