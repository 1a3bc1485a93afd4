-- The ingest bench's floor for Parquet: DuckDB's own reader into a table.
CREATE TABLE bench_floor AS SELECT * FROM read_parquet($path);
