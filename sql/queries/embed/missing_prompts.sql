-- Prompts without a vector for this encoder, shortest first (similar lengths batch with less padding),
-- optionally restricted to a prompt-hash range [lo, hi) (a distributed chunk). Prompts are keyed by the hash
-- of their text, so a text seen many times (or in several sources) is encoded once.
SELECT p.prompt_id, p.text
FROM prompts p
WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = p.prompt_id AND e.encoder = $encoder)
  AND ($lo IS NULL OR p.prompt_id >= $lo)
  AND ($hi IS NULL OR p.prompt_id < $hi)
ORDER BY p.n_chars, p.prompt_id;
