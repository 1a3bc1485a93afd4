-- One row per prompt of the split that has an embedding; task = the outcome's task (eval_name); template_id = the
-- template stripped from the prompt before embedding (NULL: none).
-- A prompt that appears in the test split never trains (whatever source observed it).
WITH wanted AS (
    SELECT prompt_id, min(task) AS task
    FROM outcomes o
    WHERE ($split IS NULL OR split = $split)
      AND ($sources IS NULL OR list_contains($sources, source))
      AND ($split IS DISTINCT FROM 'train'
           OR NOT EXISTS (SELECT 1 FROM outcomes t WHERE t.split = 'test' AND t.prompt_id = o.prompt_id))
    GROUP BY prompt_id
)
SELECT w.prompt_id, w.task, p.n_chars, e.vector, e.template_id
FROM wanted w
JOIN prompts p USING (prompt_id)
JOIN embeddings e ON e.prompt_id = w.prompt_id AND e.encoder = $encoder
ORDER BY w.prompt_id;
