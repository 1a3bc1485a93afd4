SELECT report_dir FROM training_runs ORDER BY finished_at DESC LIMIT 1;
