-- Backlog queries no router version has decided yet: work for the next route step.
SELECT count(*) AS n
FROM backlog b
WHERE NOT EXISTS (SELECT 1 FROM routing_decisions d WHERE d.query_id = b.query_id);
