-- Per encoder present in the store (and the configured one): prompts with and without a vector, and the vectors
-- made under another representation than $representation (router.representation: the next embed step replaces
-- those of the configured encoder).
WITH encoders AS (
    SELECT DISTINCT encoder FROM embeddings
    UNION SELECT $encoder
)
SELECT x.encoder,
       (SELECT count(*) FROM prompts) AS prompts,
       (SELECT count(*) FROM embeddings e WHERE e.encoder = x.encoder
            AND EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = e.prompt_id)) AS embedded,
       (SELECT count(*) FROM prompts p WHERE NOT EXISTS (
            SELECT 1 FROM embeddings e WHERE e.prompt_id = p.prompt_id AND e.encoder = x.encoder)) AS missing,
       (SELECT count(*) FROM embeddings e WHERE e.encoder = x.encoder
            AND e.representation IS DISTINCT FROM $representation
            AND EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = e.prompt_id)) AS other_representation
FROM encoders x
ORDER BY x.encoder = $encoder DESC, x.encoder;
