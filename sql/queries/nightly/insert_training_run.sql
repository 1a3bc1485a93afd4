INSERT INTO training_runs (run_id, data_key, mlflow_run_id, model_version, attention_aiq, best_baseline,
                           baseline_aiq, report_dir, flow_run_id, finished_at)
VALUES ($run_id, $data_key, $mlflow_run_id, $model_version, $attention_aiq, $best_baseline, $baseline_aiq,
        $report_dir, $flow_run_id, $now);
