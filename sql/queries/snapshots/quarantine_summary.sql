SELECT kind, file, reason, count(*) AS rows, min(quarantined_at) AS first_seen, max(quarantined_at) AS last_seen
FROM quarantine
GROUP BY ALL
ORDER BY rows DESC;
