SELECT chosen_model, count(*) AS queries, sum(predicted_cost_usd) AS predicted_spend_usd,
       avg(predicted_quality) AS mean_predicted_quality
FROM routing_decisions WHERE model_version = $version
GROUP BY ALL ORDER BY queries DESC;
