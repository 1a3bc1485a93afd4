-- One decision per pending query, from its (prompt, task) unit's decision (and its parameter: a mixed policy
-- routes units with two); `chosen` indexes staged_models. A query this version decided under this policy before
-- another policy's decision (routing/stage_pending) gets its row replaced: same key, this run's decision and time.
INSERT OR REPLACE INTO routing_decisions
SELECT r.query_id, $version, $router, m.name, s.predicted_quality, s.predicted_cost_usd, $reward, s.reward_param,
       s.reward_value, $budget, $flow_run_id, $now, $policy
FROM route_pending r
JOIN staged_decisions s ON s.prompt_id = r.prompt_id AND s.task = r.task
JOIN staged_models m ON m.idx = s.chosen;
