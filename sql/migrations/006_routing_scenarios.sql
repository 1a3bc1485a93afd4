-- What-if scenarios for analysts (`routerctl scenarios`, nightly `scenarios` step): for one backlog and the
-- champion's predictions, the predicted spend, mean predicted quality and model mix at every value of the
-- reward's sweep. Nothing here is a decision: routing_decisions is never written by a scenario run.

CREATE TABLE routing_scenarios (
    scenario_run_id     VARCHAR NOT NULL,
    created_at          TIMESTAMP NOT NULL,
    model_version       VARCHAR NOT NULL,     -- the champion whose predictions were used
    backlog             VARCHAR NOT NULL,     -- pending (not yet decided by that version) | all (every query)
    queries             BIGINT NOT NULL,      -- backlog queries with an embedding, each counted once
    reward              VARCHAR NOT NULL,     -- linear | exponential
    reward_param        DOUBLE NOT NULL,      -- λ or τ
    point               VARCHAR NOT NULL,     -- sweep | policy (the default policy's parameter) | reference
    reference_model     VARCHAR,              -- the best single model (point = reference: every query to it)
    predicted_spend_usd DOUBLE NOT NULL,
    predicted_quality   DOUBLE NOT NULL,      -- mean over the queries
    PRIMARY KEY (scenario_run_id, point, reward_param)
);

CREATE TABLE routing_scenario_mix (
    scenario_run_id     VARCHAR NOT NULL,
    point               VARCHAR NOT NULL,
    reward_param        DOUBLE NOT NULL,
    model               VARCHAR NOT NULL,
    queries             BIGINT NOT NULL,
    share               DOUBLE NOT NULL,      -- queries / all queries of the scenario
    PRIMARY KEY (scenario_run_id, point, reward_param, model)
);

-- The newest scenario run, one row per point, with its model mix as a JSON object {model: share}.
CREATE VIEW latest_scenarios AS
SELECT s.*, (SELECT CAST(json_group_object(m.model, m.share) AS VARCHAR)
             FROM routing_scenario_mix m
             WHERE m.scenario_run_id = s.scenario_run_id AND m.point = s.point
               AND m.reward_param = s.reward_param) AS model_shares
FROM routing_scenarios s
WHERE s.scenario_run_id = (SELECT scenario_run_id FROM routing_scenarios
                           ORDER BY created_at DESC, scenario_run_id DESC LIMIT 1);
