-- The champion ($version: the registry's, as the nightly reads it; NULL: the latest recorded by a promotion), and
-- when the training run its prompts come from finished: its own, or, for a champion onboarded onto an earlier one
-- (nightly onboard step: a promotion row, no training run of its own), that of the version it was onboarded onto,
-- followed back through the gates' champion_before (gate rows only: a manual or external move of the alias is no
-- onboarding). No row: no champion, or none on its line whose training run
-- this store recorded.
WITH RECURSIVE champion AS (
    SELECT coalesce($version, (SELECT champion_after FROM promotions WHERE champion_after IS NOT NULL
                               ORDER BY decided_at DESC LIMIT 1)) AS version
),
line(version, depth) AS (
    SELECT version, 0 FROM champion
    UNION
    SELECT p.champion_before, l.depth + 1
    FROM line l
    JOIN promotions p ON p.challenger = l.version AND p.champion_after = l.version AND p.champion_before IS NOT NULL
                    AND p.kind = 'gate'
    WHERE l.depth < 64 AND NOT EXISTS (SELECT 1 FROM training_runs t WHERE t.model_version = l.version)
)
SELECT c.version AS model_version, t.finished_at
FROM champion c, line l
JOIN training_runs t ON t.model_version = l.version
ORDER BY l.depth, t.finished_at DESC
LIMIT 1;
