-- Distinct (prompt, task) units of the pending backlog (no vectors: small), optionally restricted to a
-- prompt-hash range [lo, hi) (prompt_id is hex of sha256, so ranges split the work evenly). Each unit is
-- predicted once however many queries share it; n_queries weighs it in spend and quality.
SELECT u.prompt_id, u.task, u.n_queries, p.n_chars
FROM (
    SELECT prompt_id, task, count(*) AS n_queries
    FROM route_pending
    WHERE embedded
      AND ($lo IS NULL OR prompt_id >= $lo)
      AND ($hi IS NULL OR prompt_id < $hi)
    GROUP BY prompt_id, task
) u
JOIN prompts p ON p.prompt_id = u.prompt_id;
