-- Vectors about to be replaced (their prompt's representation, template or encoder weights changed): the staged
-- chunk's prompts.
DELETE FROM embeddings e
WHERE EXISTS (SELECT 1 FROM staged_vectors s WHERE s.prompt_id = e.prompt_id AND s.encoder = e.encoder);
