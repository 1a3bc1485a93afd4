-- The champion's training prompts: the train split as it stood when its training run finished (outcomes ingested
-- by then), a prompt of the test split excluded as in dataset/observations.sql; with the encoder's vector.
WITH wanted AS (
    SELECT prompt_id, min(task) AS task
    FROM outcomes o
    WHERE split = 'train' AND ingested_at <= $trained_at
      AND NOT EXISTS (SELECT 1 FROM outcomes t WHERE t.split = 'test' AND t.prompt_id = o.prompt_id)
    GROUP BY prompt_id
)
SELECT w.prompt_id, coalesce(w.task, p.task) AS task, e.vector
FROM wanted w
JOIN prompts p USING (prompt_id)
LEFT JOIN embeddings e ON e.prompt_id = w.prompt_id AND e.encoder = $encoder
ORDER BY w.prompt_id;
