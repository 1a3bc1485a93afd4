-- Migration 007 first keyed the decisions stored before it with DuckDB's DOUBLE-to-text cast ('lambda=7500.0',
-- 'lambda=1000000000.0', 'budget=5.0'), where routing writes '%g' ('lambda=7500', 'lambda=1e+09', 'budget=5'):
-- one policy under two keys, so routing after the upgrade decided the backlog again and policy_runs listed the
-- policy twice. Those keys are rewritten as routing writes them. A query that routing has since decided again
-- under the rewritten key keeps that newer decision only (as routing a policy again replaces its row).
DELETE FROM routing_decisions d
WHERE ((d.budget_usd IS NULL AND d.policy = 'lambda=' || CAST(d.reward_param AS VARCHAR)
        AND d.policy <> 'lambda=' || printf('%g', d.reward_param))
    OR (d.budget_usd IS NOT NULL AND d.policy = 'budget=' || CAST(d.budget_usd AS VARCHAR)
        AND d.policy <> 'budget=' || printf('%g', d.budget_usd)))
  AND EXISTS (SELECT 1 FROM routing_decisions n
              WHERE n.query_id = d.query_id AND n.model_version = d.model_version
                AND n.policy = CASE WHEN d.budget_usd IS NULL THEN 'lambda=' || printf('%g', d.reward_param)
                                    ELSE 'budget=' || printf('%g', d.budget_usd) END);

UPDATE routing_decisions
SET policy = CASE WHEN budget_usd IS NULL THEN 'lambda=' || printf('%g', reward_param)
                  ELSE 'budget=' || printf('%g', budget_usd) END
WHERE (budget_usd IS NULL AND policy = 'lambda=' || CAST(reward_param AS VARCHAR)
       AND policy <> 'lambda=' || printf('%g', reward_param))
   OR (budget_usd IS NOT NULL AND policy = 'budget=' || CAST(budget_usd AS VARCHAR)
       AND policy <> 'budget=' || printf('%g', budget_usd));
