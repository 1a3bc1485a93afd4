-- One row per prompt of the split (split_outcomes: a test prompt never trains) that has an embedding; task = the
-- outcome's task (eval_name); template_id = the template stripped from the prompt before embedding (NULL: none).
WITH wanted AS (
    SELECT prompt_id, min(task) AS task
    FROM split_outcomes
    WHERE ($split IS NULL OR split = $split)
      AND ($sources IS NULL OR list_contains($sources, source))
    GROUP BY prompt_id
)
SELECT w.prompt_id, w.task, p.n_chars, e.vector, e.template_id
FROM wanted w
JOIN prompts p USING (prompt_id)
JOIN embeddings e ON e.prompt_id = w.prompt_id AND e.encoder = $encoder
ORDER BY w.prompt_id;
