-- Migration 007 first keyed the decisions stored before it with DuckDB's DOUBLE-to-text cast ('lambda=7500.0',
-- 'lambda=1000000000.0', 'budget=5.0'), where routing writes '%g' ('lambda=7500', 'lambda=1e+09', 'budget=5'):
-- one policy under two keys, so routing after the upgrade decided the backlog again and policy_runs listed the
-- policy twice. Those keys are rewritten as routing writes them. A query that routing has since decided again
-- under the rewritten key keeps that newer decision only (as routing a policy again replaces its row).
CREATE TEMP MACRO cast_key(budget_usd, reward_param) AS
    CASE WHEN budget_usd IS NULL THEN 'lambda=' || CAST(reward_param AS VARCHAR)
         ELSE 'budget=' || CAST(budget_usd AS VARCHAR) END;
CREATE TEMP MACRO routing_key(budget_usd, reward_param) AS
    CASE WHEN budget_usd IS NULL THEN 'lambda=' || printf('%g', reward_param)
         ELSE 'budget=' || printf('%g', budget_usd) END;

DELETE FROM routing_decisions d
WHERE d.policy = cast_key(d.budget_usd, d.reward_param) AND d.policy <> routing_key(d.budget_usd, d.reward_param)
  AND EXISTS (SELECT 1 FROM routing_decisions n
              WHERE n.query_id = d.query_id AND n.model_version = d.model_version
                AND n.policy = routing_key(d.budget_usd, d.reward_param));

UPDATE routing_decisions
SET policy = routing_key(budget_usd, reward_param)
WHERE policy = cast_key(budget_usd, reward_param) AND policy <> routing_key(budget_usd, reward_param);

DROP MACRO temp.cast_key;
DROP MACRO temp.routing_key;
