-- Observed (prompt, model) pairs of a split; repeated observations are averaged.
-- A prompt that appears in the test split never trains (whatever source observed it).
SELECT prompt_id, model, avg(quality) AS quality, avg(cost_usd) AS cost_usd
FROM outcomes o
WHERE ($split IS NULL OR split = $split)
  AND ($sources IS NULL OR list_contains($sources, source))
  AND ($split IS DISTINCT FROM 'train'
       OR NOT EXISTS (SELECT 1 FROM outcomes t WHERE t.split = 'test' AND t.prompt_id = o.prompt_id))
GROUP BY prompt_id, model;
