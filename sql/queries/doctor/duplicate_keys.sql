-- Natural keys stored more than once (the tables have no PRIMARY KEY since migration 005: the ingest keeps
-- them unique). One row per table: how many keys are duplicated, and one example.
SELECT 'prompts (prompt_id)' AS what, count(*) AS n, min(k) AS example
FROM (SELECT prompt_id AS k FROM prompts GROUP BY prompt_id HAVING count(*) > 1)
UNION ALL
SELECT 'outcomes (source, sample_key, model)', count(*), min(k)
FROM (SELECT source || ' / ' || sample_key || ' / ' || model AS k FROM outcomes
      GROUP BY source, sample_key, model HAVING count(*) > 1)
UNION ALL
SELECT 'backlog (query_id)', count(*), min(k)
FROM (SELECT query_id AS k FROM backlog GROUP BY query_id HAVING count(*) > 1);
