-- Quarantined records by kind and reason, all time (information for the report, not a failure).
SELECT kind, reason, count(*) AS n
FROM quarantine
GROUP BY ALL
ORDER BY n DESC, kind, reason;
