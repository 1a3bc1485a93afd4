SELECT kind, reason, count(*) AS rows FROM quarantine GROUP BY ALL ORDER BY rows DESC LIMIT 20;
