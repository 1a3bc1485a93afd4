-- One row per training run of the nightly pipeline; data_key identifies the training inputs
-- (ingest runs, encoder, seed, router set), so an unchanged store skips training.
CREATE TABLE training_runs (
    run_id          VARCHAR PRIMARY KEY,
    data_key        VARCHAR NOT NULL,
    mlflow_run_id   VARCHAR,
    model_version   VARCHAR,
    attention_aiq   DOUBLE,
    best_baseline   VARCHAR,
    baseline_aiq    DOUBLE,
    report_dir      VARCHAR,
    flow_run_id     VARCHAR,
    finished_at     TIMESTAMP NOT NULL
);

CREATE VIEW training_history AS
SELECT finished_at, run_id, model_version, attention_aiq, best_baseline, baseline_aiq, data_key
FROM training_runs
ORDER BY finished_at DESC;

-- One row per nightly run: what the trend plot and the report's history table read.
CREATE TABLE nightly_runs (
    flow_run_id        VARCHAR PRIMARY KEY,
    night              DATE NOT NULL,
    started_at         TIMESTAMP NOT NULL,
    finished_at        TIMESTAMP NOT NULL,
    rows_new           BIGINT NOT NULL,
    rows_quarantined   BIGINT NOT NULL,
    trained            BOOLEAN NOT NULL,
    champion_version   VARCHAR,
    attention_aiq      DOUBLE,
    baseline_aiq       DOUBLE,
    routed             BIGINT NOT NULL,
    predicted_spend_usd DOUBLE NOT NULL,
    report_dir         VARCHAR NOT NULL
);
