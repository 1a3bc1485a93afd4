-- policy_runs showed one reward_param per policy run, the smallest: a mixed quality-target policy (a share of the
-- prompts, by prompt hash, routed with a second, dearer parameter; router.policy) showed only its cheaper one.
-- It now shows the dearer parameter and how many queries it routed too (NULL and 0 for a single parameter).
CREATE OR REPLACE VIEW policy_runs AS
WITH d AS (
    SELECT *, min(reward_param) OVER (PARTITION BY model_version, policy, reward) AS cheaper
    FROM routing_decisions
)
SELECT model_version, policy, reward, min(reward_param) AS reward_param, count(*) AS queries,
       sum(predicted_cost_usd) AS predicted_spend_usd, avg(predicted_quality) AS mean_predicted_quality,
       min(decided_at) AS first_decided_at, max(decided_at) AS last_decided_at,
       CASE WHEN max(reward_param) > min(reward_param) THEN max(reward_param) END AS dear_reward_param,
       count(*) FILTER (WHERE reward_param > cheaper) AS dear_queries
FROM d
GROUP BY model_version, policy, reward
ORDER BY last_decided_at DESC;
