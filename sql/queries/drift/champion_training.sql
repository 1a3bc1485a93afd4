-- The latest champion recorded by a promotion and when its training run finished (no row: no champion, or a
-- champion whose training run this store did not record).
SELECT t.model_version, t.finished_at
FROM (SELECT champion_after FROM promotions WHERE champion_after IS NOT NULL ORDER BY decided_at DESC LIMIT 1) c
JOIN training_runs t ON t.model_version = c.champion_after
ORDER BY t.finished_at DESC
LIMIT 1;
