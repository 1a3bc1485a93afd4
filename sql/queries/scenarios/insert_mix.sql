-- One scenario run's model mix per point (staged_mix: point, reward_param, model, queries, share).
INSERT INTO routing_scenario_mix
SELECT $run_id, m.point, m.reward_param, m.model, m.queries, m.share
FROM staged_mix m;
