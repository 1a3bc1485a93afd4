INSERT INTO embeddings (prompt_id, encoder, dim, vector, embedded_at, representation, template_id, encoder_weights,
                        encoder_variant)
SELECT prompt_id, encoder, dim, vector, $now, representation, template_id, encoder_weights, encoder_variant
FROM staged_vectors s
WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = s.prompt_id AND e.encoder = s.encoder);
