INSERT INTO models (name, first_seen)
SELECT DISTINCT model, $now FROM staged s
WHERE NOT EXISTS (SELECT 1 FROM models m WHERE m.name = s.model);
