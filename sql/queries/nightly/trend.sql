-- Night-over-night trend, one row per night over its runs (a re-run or a resumed run adds its own row): what
-- they routed and spent together, and the newest AIQ and champion any of them recorded.
SELECT night,
       arg_max(attention_aiq, finished_at) FILTER (WHERE attention_aiq IS NOT NULL) AS attention_aiq,
       arg_max(baseline_aiq, finished_at) FILTER (WHERE baseline_aiq IS NOT NULL) AS baseline_aiq,
       sum(routed) AS routed,
       sum(predicted_spend_usd) AS predicted_spend_usd,
       arg_max(champion_version, finished_at) FILTER (WHERE champion_version IS NOT NULL) AS champion_version
FROM nightly_runs
GROUP BY night
ORDER BY night;
