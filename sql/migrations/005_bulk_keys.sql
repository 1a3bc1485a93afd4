-- Bulk-load speed: prompts, outcomes and backlog lose their PRIMARY KEY constraints.
--
-- DuckDB maintains an ART index for every PRIMARY KEY. On 1M new log rows the two indexes cost more than
-- the rest of the ingest together (building them on insert, then writing them at checkpoint), and no query
-- uses them: joins are hash joins. Uniqueness of the natural keys is kept by the ingest itself (one writer
-- at a time, the run lock, and an anti-join against the stored keys inside the file's transaction) and
-- checked by `routerctl doctor` ("keys": sql/queries/doctor/duplicate_keys.sql).
--
-- DuckDB cannot drop a constraint in place: each table is copied, dropped and renamed (same columns, same
-- order, same rows). Views refer to tables by name and are bound when queried, so they keep working.
-- The ingest also records how many rows Great Expectations itself validated (the rest were checked by the
-- suite's expectations compiled to column expressions; see router/validation.py).

CREATE TABLE prompts_005 (
    prompt_id   VARCHAR NOT NULL,             -- first 32 hex chars of sha256(text), stable across runs; unique
    text        VARCHAR NOT NULL,
    n_chars     INTEGER NOT NULL,
    task        VARCHAR,
    source      VARCHAR NOT NULL,
    first_seen  TIMESTAMP NOT NULL
);
INSERT INTO prompts_005 SELECT prompt_id, text, n_chars, task, source, first_seen FROM prompts;
DROP TABLE prompts;
ALTER TABLE prompts_005 RENAME TO prompts;

CREATE TABLE outcomes_005 (
    source        VARCHAR NOT NULL,           -- (source, sample_key, model) is unique
    sample_key    VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    prompt_id     VARCHAR NOT NULL,
    quality       DOUBLE,
    cost_usd      DOUBLE NOT NULL,
    split         VARCHAR NOT NULL,
    task          VARCHAR,
    ts            TIMESTAMPTZ,
    latency_ms    DOUBLE,
    tokens_in     BIGINT,
    tokens_out    BIGINT,
    ingest_run_id VARCHAR NOT NULL,
    ingested_at   TIMESTAMP NOT NULL
);
INSERT INTO outcomes_005
SELECT source, sample_key, model, prompt_id, quality, cost_usd, split, task, ts, latency_ms, tokens_in, tokens_out,
       ingest_run_id, ingested_at
FROM outcomes;
DROP TABLE outcomes;
ALTER TABLE outcomes_005 RENAME TO outcomes;

CREATE TABLE backlog_005 (
    query_id      VARCHAR NOT NULL,           -- unique
    prompt_id     VARCHAR NOT NULL,
    task          VARCHAR,
    submitted_at  TIMESTAMPTZ,
    ingest_run_id VARCHAR NOT NULL,
    ingested_at   TIMESTAMP NOT NULL
);
INSERT INTO backlog_005 SELECT query_id, prompt_id, task, submitted_at, ingest_run_id, ingested_at FROM backlog;
DROP TABLE backlog;
ALTER TABLE backlog_005 RENAME TO backlog;

ALTER TABLE ingest_runs ADD COLUMN rows_gx_validated BIGINT;  -- NULL for runs before this migration
