-- Model versions that made routing decisions (checked against the MLflow registry), and how many each.
SELECT model_version, router, count(*) AS decisions
FROM routing_decisions
GROUP BY model_version, router
ORDER BY try_cast(model_version AS BIGINT), model_version;
