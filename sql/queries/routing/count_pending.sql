SELECT count(*) AS pending,
       count(*) FILTER (WHERE NOT EXISTS (
           SELECT 1 FROM embeddings e WHERE e.prompt_id = b.prompt_id AND e.encoder = $encoder
       )) AS unembedded
FROM backlog b
WHERE NOT EXISTS (
    SELECT 1 FROM routing_decisions d WHERE d.query_id = b.query_id AND d.model_version = $version
);
