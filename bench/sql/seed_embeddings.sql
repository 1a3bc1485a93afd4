-- Vectors from seed_frame for the stored prompts that lack one (same encoder, same text: the same vector).
INSERT INTO embeddings (prompt_id, encoder, dim, vector, embedded_at, representation, template_id)
SELECT s.prompt_id, s.encoder, s.dim, s.vector, s.embedded_at, s.representation, s.template_id
FROM seed_frame s
WHERE EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = s.prompt_id)
  AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = s.prompt_id AND e.encoder = s.encoder);
