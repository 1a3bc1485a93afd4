SELECT night, flow_run_id, name, statistic, threshold, breached, detail FROM drift_checks_latest;
