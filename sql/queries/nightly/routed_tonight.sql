-- What other flow runs of this night routed: decisions of the champion under tonight's policy key made on the
-- night's date (UTC) by another flow run (an earlier run of the night, finished, or stopped before its report and
-- resumed by a later one). One row per (flow run, chosen model). `reported`: that run wrote its own nightly_runs
-- row; `counted`: its routing is in a nightly_runs row already (its own, or that of a run of the night that
-- finished after it, which counted it as this run counts the ones not counted yet).
SELECT d.flow_run_id, d.chosen_model, count(*) AS queries, sum(d.predicted_cost_usd) AS predicted_spend_usd,
       min(d.decided_at) AS first_decided_at,
       EXISTS (SELECT 1 FROM nightly_runs n WHERE n.flow_run_id = d.flow_run_id) AS reported,
       EXISTS (SELECT 1 FROM nightly_runs n WHERE n.flow_run_id = d.flow_run_id)
           OR min(d.decided_at) < (SELECT max(n.finished_at) FROM nightly_runs n WHERE n.night = $night) AS counted
FROM routing_decisions d
WHERE d.model_version = $version AND d.policy = $policy AND d.flow_run_id IS NOT NULL
  AND d.flow_run_id <> $flow_run_id AND CAST(d.decided_at AS DATE) = $night
GROUP BY d.flow_run_id, d.chosen_model
ORDER BY first_decided_at, d.flow_run_id, d.chosen_model;
