-- One scenario run's points (staged_points: point, reward_param, reference_model, spend, quality).
INSERT INTO routing_scenarios (scenario_run_id, created_at, model_version, backlog, queries, reward, reward_param,
                               point, reference_model, predicted_spend_usd, predicted_quality, prices, excluded)
SELECT $run_id, $now, $version, $backlog, $queries, $reward, p.reward_param, p.point, p.reference_model,
       p.predicted_spend_usd, p.predicted_quality, $prices, $excluded
FROM staged_points p;
