INSERT INTO nightly_runs (flow_run_id, night, started_at, finished_at, rows_new, rows_quarantined, trained,
                          champion_version, attention_aiq, baseline_aiq, routed, predicted_spend_usd, report_dir,
                          drift_breached)
VALUES ($flow_run_id, $night, $started, $now, $rows_new, $rows_quarantined, $trained, $champion_version,
        $attention_aiq, $baseline_aiq, $routed, $spend, $report_dir, $drift_breached);
