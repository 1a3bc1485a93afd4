-- One row per prompt of the split that has an embedding; task = the outcome's task (eval_name).
WITH wanted AS (
    SELECT prompt_id, min(task) AS task
    FROM outcomes
    WHERE ($split IS NULL OR split = $split)
      AND ($sources IS NULL OR list_contains($sources, source))
    GROUP BY prompt_id
)
SELECT w.prompt_id, w.task, p.n_chars, e.vector
FROM wanted w
JOIN prompts p USING (prompt_id)
JOIN embeddings e ON e.prompt_id = w.prompt_id AND e.encoder = $encoder
ORDER BY w.prompt_id;
