-- One scenario run's points (staged_points: point, reward_param, reference_model, spend, quality).
INSERT INTO routing_scenarios
SELECT $run_id, $now, $version, $backlog, $queries, $reward, p.reward_param, p.point, p.reference_model,
       p.predicted_spend_usd, p.predicted_quality
FROM staged_points p;
