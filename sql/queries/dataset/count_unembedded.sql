SELECT count(DISTINCT o.prompt_id)
FROM outcomes o
WHERE ($split IS NULL OR o.split = $split)
  AND ($sources IS NULL OR list_contains($sources, o.source))
  AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.prompt_id = o.prompt_id AND e.encoder = $encoder);
