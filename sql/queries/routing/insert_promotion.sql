INSERT INTO promotions VALUES ($now, $registered_model, $challenger, $champion_before, $champion_after,
                               $challenger_aiq, $champion_aiq, $baseline_aiq, $promoted, $reason, $flow_run_id);
