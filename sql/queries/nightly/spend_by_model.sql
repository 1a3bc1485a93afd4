-- The model mix of every decision the champion made under tonight's policy key (new and earlier nights'): a
-- query decided under several policies (a what-if `routerctl route`, other prices) is counted once.
SELECT chosen_model, count(*) AS queries, sum(predicted_cost_usd) AS predicted_spend_usd,
       avg(predicted_quality) AS mean_predicted_quality
FROM routing_decisions WHERE model_version = $version AND policy = $policy
GROUP BY ALL ORDER BY queries DESC;
