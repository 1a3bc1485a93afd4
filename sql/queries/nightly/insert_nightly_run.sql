INSERT INTO nightly_runs VALUES ($flow_run_id, $night, $started, $now, $rows_new, $rows_quarantined, $trained,
                                 $champion_version, $attention_aiq, $baseline_aiq, $routed, $spend, $report_dir);
