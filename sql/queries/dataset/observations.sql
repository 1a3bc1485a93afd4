-- Observed (prompt, model) pairs of a split (split_outcomes: a test prompt never trains); repeated observations
-- are averaged.
SELECT prompt_id, model, avg(quality) AS quality, avg(cost_usd) AS cost_usd
FROM split_outcomes
WHERE ($split IS NULL OR split = $split)
  AND ($sources IS NULL OR list_contains($sources, source))
GROUP BY prompt_id, model;
