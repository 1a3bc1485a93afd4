-- Routing decisions written by `routerctl route` / the nightly flow, and the promotion ledger.

CREATE TABLE routing_decisions (
    query_id            VARCHAR NOT NULL,
    model_version       VARCHAR NOT NULL,     -- registered model version that decided
    router              VARCHAR NOT NULL,     -- registered model name
    chosen_model        VARCHAR NOT NULL,
    predicted_quality   DOUBLE NOT NULL,
    predicted_cost_usd  DOUBLE NOT NULL,
    reward              VARCHAR NOT NULL,     -- linear | exponential
    reward_param        DOUBLE NOT NULL,      -- λ (willingness to pay) for linear, τ for exponential
    reward_value        DOUBLE NOT NULL,      -- the chosen model's reward
    budget_usd          DOUBLE,               -- set when λ was chosen to fit a budget
    flow_run_id         VARCHAR,
    decided_at          TIMESTAMP NOT NULL,
    PRIMARY KEY (query_id, model_version)
);

CREATE TABLE promotions (
    decided_at        TIMESTAMP NOT NULL,
    registered_model  VARCHAR NOT NULL,
    challenger        VARCHAR NOT NULL,       -- version evaluated
    champion_before   VARCHAR,                -- champion version at the time (NULL for the first)
    champion_after    VARCHAR,
    challenger_aiq    DOUBLE,
    champion_aiq      DOUBLE,                 -- re-evaluated in the same run on the same data
    baseline_aiq      DOUBLE,
    promoted          BOOLEAN NOT NULL,
    reason            VARCHAR NOT NULL,
    flow_run_id       VARCHAR
);
