-- Core tables of the routing store. Applied once; the version is recorded in schema_migrations.

CREATE TABLE prompts (
    prompt_id   VARCHAR PRIMARY KEY,          -- first 32 hex chars of sha256(text), stable across runs
    text        VARCHAR NOT NULL,
    n_chars     INTEGER NOT NULL,
    task        VARCHAR,                      -- eval_name for RouterBench, optional task for logs/backlog
    source      VARCHAR NOT NULL,             -- where the prompt was first seen: routerbench, logs, backlog
    first_seen  TIMESTAMP NOT NULL
);

CREATE TABLE models (
    name        VARCHAR PRIMARY KEY,
    first_seen  TIMESTAMP NOT NULL
);

CREATE TABLE ingest_runs (
    run_id           VARCHAR PRIMARY KEY,
    kind             VARCHAR NOT NULL,        -- routerbench | logs | backlog
    file             VARCHAR NOT NULL,
    sha256           VARCHAR NOT NULL,
    source_rows      BIGINT NOT NULL,         -- rows in the file
    rows_in          BIGINT NOT NULL,         -- records checked (observations for wide RouterBench rows)
    rows_ok          BIGINT NOT NULL,         -- records that passed validation (new or already stored identically)
    rows_new         BIGINT NOT NULL,         -- of rows_ok, records inserted by this run
    rows_quarantined BIGINT NOT NULL,         -- rows_in = rows_ok + rows_quarantined
    started_at       TIMESTAMP NOT NULL,
    finished_at      TIMESTAMP NOT NULL
);

CREATE TABLE outcomes (
    source        VARCHAR NOT NULL,           -- routerbench (or a named RouterBench variant) | logs
    sample_key    VARCHAR NOT NULL,           -- RouterBench sample_id, or the log's request_id
    model         VARCHAR NOT NULL,
    prompt_id     VARCHAR NOT NULL,
    quality       DOUBLE,                     -- in [0, 1]; NULL = not scored (masked in training)
    cost_usd      DOUBLE NOT NULL,
    split         VARCHAR NOT NULL,           -- train | test
    task          VARCHAR,
    ts            TIMESTAMPTZ,                -- request time (logs)
    latency_ms    DOUBLE,
    tokens_in     BIGINT,
    tokens_out    BIGINT,
    ingest_run_id VARCHAR NOT NULL,
    ingested_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (source, sample_key, model)
);

CREATE TABLE backlog (
    query_id      VARCHAR PRIMARY KEY,
    prompt_id     VARCHAR NOT NULL,
    task          VARCHAR,
    submitted_at  TIMESTAMPTZ,
    ingest_run_id VARCHAR NOT NULL,
    ingested_at   TIMESTAMP NOT NULL
);

CREATE TABLE quarantine (
    ingest_run_id  VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    file           VARCHAR NOT NULL,
    row_number     BIGINT,                    -- 1-based data row (line for JSONL) in the file
    row_key        VARCHAR,                   -- natural key when it could be read
    raw            JSON,                      -- the offending record
    reason         VARCHAR NOT NULL,
    quarantined_at TIMESTAMP NOT NULL
);

CREATE TABLE embeddings (
    prompt_id   VARCHAR NOT NULL,
    encoder     VARCHAR NOT NULL,
    dim         INTEGER NOT NULL,
    vector      FLOAT[] NOT NULL,             -- L2-normalised
    embedded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (prompt_id, encoder)
);
