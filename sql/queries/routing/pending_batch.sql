-- Next batch of backlog queries not yet decided by this model version (keyset pagination on query_id).
SELECT b.query_id, b.task, p.n_chars, e.vector
FROM backlog b
JOIN prompts p USING (prompt_id)
JOIN embeddings e ON e.prompt_id = b.prompt_id AND e.encoder = $encoder
WHERE b.query_id > $after
  AND NOT EXISTS (
      SELECT 1 FROM routing_decisions d WHERE d.query_id = b.query_id AND d.model_version = $version
  )
ORDER BY b.query_id
LIMIT $limit;
