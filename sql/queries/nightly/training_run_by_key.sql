SELECT run_id, model_version, attention_aiq, best_baseline, baseline_aiq, report_dir
FROM training_runs WHERE data_key = $data_key ORDER BY finished_at DESC LIMIT 1;
