-- Several routing policies side by side: a decision is keyed by (query_id, model_version, policy), so routing
-- the backlog again with another policy (`routerctl route --quality-target 0.95` after the nightly run) keeps
-- both sets. `policy` names how the reward parameter was chosen: quality_target=<t>, lambda=<λ> or
-- budget=<usd>. Decisions stored before this migration get lambda=<reward_param> or budget=<budget_usd>, the number
-- written as routing writes it (printf '%g', Python's ':g': lambda=7500, lambda=1e+09, budget=5).
-- DuckDB cannot change a primary key in place: the table is copied, dropped and renamed (views bind by name).

CREATE TABLE routing_decisions_007 (
    query_id            VARCHAR NOT NULL,
    model_version       VARCHAR NOT NULL,
    router              VARCHAR NOT NULL,
    chosen_model        VARCHAR NOT NULL,
    predicted_quality   DOUBLE NOT NULL,
    predicted_cost_usd  DOUBLE NOT NULL,
    reward              VARCHAR NOT NULL,
    reward_param        DOUBLE NOT NULL,
    reward_value        DOUBLE NOT NULL,
    budget_usd          DOUBLE,
    flow_run_id         VARCHAR,
    decided_at          TIMESTAMP NOT NULL,
    policy              VARCHAR NOT NULL,     -- quality_target=<t> | lambda=<λ> | budget=<usd>
    PRIMARY KEY (query_id, model_version, policy)
);
INSERT INTO routing_decisions_007
SELECT *, CASE WHEN budget_usd IS NOT NULL THEN 'budget=' || printf('%g', budget_usd)
              ELSE 'lambda=' || printf('%g', reward_param) END
FROM routing_decisions;
DROP TABLE routing_decisions;
ALTER TABLE routing_decisions_007 RENAME TO routing_decisions;

-- One row per (model version, policy): what each policy run decided, newest first.
CREATE VIEW policy_runs AS
SELECT model_version, policy, reward, min(reward_param) AS reward_param, count(*) AS queries,
       sum(predicted_cost_usd) AS predicted_spend_usd, avg(predicted_quality) AS mean_predicted_quality,
       min(decided_at) AS first_decided_at, max(decided_at) AS last_decided_at
FROM routing_decisions
GROUP BY model_version, policy, reward
ORDER BY last_decided_at DESC;
