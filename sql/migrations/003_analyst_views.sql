-- Views for analysts. Query them in the store, or in the Parquet snapshots exported after every run
-- (docs/analysts.md) while a nightly run holds the database.

-- The most recent decision for every backlog query (whichever model version made it).
CREATE VIEW latest_decisions AS
SELECT d.*, b.task, b.submitted_at
FROM routing_decisions d
JOIN backlog b USING (query_id)
QUALIFY row_number() OVER (PARTITION BY d.query_id ORDER BY d.decided_at DESC, d.model_version DESC) = 1;

-- Predicted spend and model mix per day of decision.
CREATE VIEW daily_spend AS
SELECT CAST(decided_at AS DATE) AS day,
       chosen_model,
       count(*) AS queries,
       sum(predicted_cost_usd) AS predicted_spend_usd,
       avg(predicted_quality) AS mean_predicted_quality,
       count(*) / sum(count(*)) OVER (PARTITION BY CAST(decided_at AS DATE)) AS share_of_day
FROM latest_decisions
GROUP BY 1, 2;

-- Which models each task is routed to.
CREATE VIEW task_mix AS
SELECT coalesce(task, '(none)') AS task,
       chosen_model,
       count(*) AS queries,
       count(*) / sum(count(*)) OVER (PARTITION BY coalesce(task, '(none)')) AS share_of_task,
       sum(predicted_cost_usd) AS predicted_spend_usd
FROM latest_decisions
GROUP BY 1, 2;

-- Routed queries for which production logs later reported an outcome from the chosen model
-- (log request_id = backlog query_id).
CREATE VIEW predicted_vs_realised AS
SELECT d.query_id, d.model_version, d.chosen_model, d.task,
       d.predicted_quality, o.quality AS realised_quality,
       d.predicted_cost_usd, o.cost_usd AS realised_cost_usd,
       o.ts AS realised_at
FROM latest_decisions d
JOIN outcomes o ON o.source = 'logs' AND o.sample_key = d.query_id AND o.model = d.chosen_model;

-- Every promotion decision, newest first.
CREATE VIEW champion_history AS
SELECT decided_at, registered_model, challenger, champion_before, champion_after, promoted,
       challenger_aiq, champion_aiq, baseline_aiq, reason, flow_run_id
FROM promotions
ORDER BY decided_at DESC;
