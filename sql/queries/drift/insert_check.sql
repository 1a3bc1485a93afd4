INSERT INTO drift_checks (night, flow_run_id, name, statistic, threshold, breached, detail, checked_at)
VALUES ($night, $flow_run_id, $name, $statistic, $threshold, $breached, $detail, $now);
