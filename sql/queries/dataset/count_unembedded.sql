-- Prompts of the split that load_routing_data leaves out for want of an embedding: the prompts of
-- prompt_vectors.sql (same filters) that have no vector for $encoder.
SELECT count(DISTINCT o.prompt_id)
FROM split_outcomes o
WHERE ($split IS NULL OR o.split = $split)
  AND ($sources IS NULL OR list_contains($sources, o.source))
  AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = o.prompt_id AND e.encoder = $encoder);
