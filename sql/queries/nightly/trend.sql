-- Night-over-night trend: the last run of each night.
SELECT night, attention_aiq, baseline_aiq, routed, predicted_spend_usd, champion_version
FROM nightly_runs
QUALIFY row_number() OVER (PARTITION BY night ORDER BY finished_at DESC) = 1
ORDER BY night;
