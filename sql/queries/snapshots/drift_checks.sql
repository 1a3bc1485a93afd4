-- The latest night's drift checks; detail as JSON text (Parquet has no JSON type).
SELECT night, flow_run_id, name, statistic, threshold, breached, CAST(detail AS VARCHAR) AS detail, checked_at
FROM drift_checks_latest;
