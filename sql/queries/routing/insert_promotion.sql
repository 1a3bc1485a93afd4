INSERT INTO promotions (decided_at, registered_model, kind, challenger, champion_before, champion_after,
                        challenger_aiq, champion_aiq, baseline_aiq, baseline_se, promoted, reason, flow_run_id)
VALUES ($now, $registered_model, $kind, $challenger, $champion_before, $champion_after, $challenger_aiq,
        $champion_aiq, $baseline_aiq, $baseline_se, $promoted, $reason, $flow_run_id);
