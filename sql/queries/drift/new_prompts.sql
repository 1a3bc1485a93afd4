-- Tonight's new prompts: first stored by this night's ingest of production logs or the backlog; with the
-- encoder's vector (NULL when not embedded).
SELECT p.prompt_id, p.task, e.vector
FROM prompts p
LEFT JOIN embeddings e ON e.prompt_id = p.prompt_id AND e.encoder = $encoder
WHERE p.source IN ('logs', 'backlog') AND p.first_seen >= $since
ORDER BY p.prompt_id;
