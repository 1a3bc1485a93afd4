-- Prompts without a vector for this encoder, shortest first (similar lengths batch with less padding).
SELECT p.prompt_id, p.text
FROM prompts p
WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = p.prompt_id AND e.encoder = $encoder)
ORDER BY p.n_chars, p.prompt_id;
