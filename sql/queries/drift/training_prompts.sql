-- The champion's training prompts: the train split (split_outcomes: a test prompt never trains) as it stood when
-- its training run finished (outcomes ingested by then); with the encoder's vector.
WITH wanted AS (
    SELECT prompt_id, min(task) AS task
    FROM split_outcomes
    WHERE split = 'train' AND ingested_at <= $trained_at
    GROUP BY prompt_id
)
SELECT w.prompt_id, coalesce(w.task, p.task) AS task, e.vector
FROM wanted w
JOIN prompts p USING (prompt_id)
LEFT JOIN embeddings e ON e.prompt_id = w.prompt_id AND e.encoder = $encoder
ORDER BY w.prompt_id;
