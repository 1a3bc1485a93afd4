-- One row per drift check of a nightly run (router.drift): tonight's new prompts against the champion's training
-- prompts (embedding two-sample test, task mix) and tonight's logged outcomes against the champion's predictions
-- (quality calibration and cost ratio per model). A skipped check has a NULL statistic and breached = false;
-- `detail` is a JSON object (direction of the threshold, sample sizes, the reason for a skip).
CREATE TABLE drift_checks (
    night        DATE NOT NULL,
    flow_run_id  VARCHAR NOT NULL,
    name         VARCHAR NOT NULL,          -- embedding | task_mix | quality:<model> | cost_ratio:<model>
    statistic    DOUBLE,                    -- NULL when skipped
    threshold    DOUBLE NOT NULL,
    breached     BOOLEAN NOT NULL,
    detail       JSON,
    checked_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (flow_run_id, name)
);

-- The checks of the latest nightly run that ran them.
CREATE VIEW drift_checks_latest AS
SELECT night, flow_run_id, name, statistic, threshold, breached, detail, checked_at
FROM drift_checks
WHERE flow_run_id = (SELECT flow_run_id FROM drift_checks ORDER BY checked_at DESC, flow_run_id DESC LIMIT 1)
ORDER BY name;

-- A night whose drift checks breached is marked (NULL for nights before this migration).
ALTER TABLE nightly_runs ADD COLUMN drift_breached BOOLEAN;
