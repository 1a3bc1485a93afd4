SELECT e.prompt_id, e.vector
FROM embeddings e JOIN wanted_prompts w USING (prompt_id)
WHERE e.encoder = $encoder;
