-- Tonight's scored production-log outcomes, with the prompt's vector (for the champion's predictions).
SELECT o.prompt_id, o.model, o.quality, o.cost_usd, coalesce(o.task, '') AS task, p.n_chars, e.vector
FROM outcomes o
JOIN prompts p USING (prompt_id)
JOIN embeddings e ON e.prompt_id = o.prompt_id AND e.encoder = $encoder
WHERE o.source = 'logs' AND o.ingested_at >= $since AND o.quality IS NOT NULL
ORDER BY o.prompt_id, o.model, o.sample_key;
