-- A re-run of the drift step replaces its night's checks.
DELETE FROM drift_checks WHERE flow_run_id = $flow_run_id;
