INSERT INTO routing_decisions
SELECT query_id, $version, $router, chosen_model, predicted_quality, predicted_cost_usd, $reward, $reward_param,
       reward_value, $budget, $flow_run_id, $now
FROM staged_decisions s
WHERE NOT EXISTS (
    SELECT 1 FROM routing_decisions d WHERE d.query_id = s.query_id AND d.model_version = $version
);
