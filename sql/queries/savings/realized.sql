-- Realized quality and cost of some routing runs' decisions (flow run ids $flow_run_ids) whose outcomes are
-- stored, for the chosen model and
-- for the reference model on the same queries. The outcome of (query, model) is its production log (log
-- request_id = backlog query_id) when one has a quality, else the mean of the stored RouterBench rows of the
-- query's prompt for that model. Queries without both outcomes are left out (and counted in `routed`).
WITH routed AS (
    SELECT d.query_id, d.chosen_model, b.prompt_id
    FROM routing_decisions d
    JOIN backlog b USING (query_id)
    WHERE list_contains($flow_run_ids, d.flow_run_id) AND d.model_version = $version
),
bench AS (
    SELECT prompt_id, model, avg(quality) AS quality, avg(cost_usd) AS cost_usd
    FROM outcomes
    WHERE source <> 'logs' AND quality IS NOT NULL
    GROUP BY prompt_id, model
),
logged AS (
    SELECT sample_key AS query_id, model, quality, cost_usd
    FROM outcomes
    WHERE source = 'logs' AND quality IS NOT NULL
),
pairs AS (
    SELECT r.query_id,
           coalesce(lc.quality, bc.quality) AS chosen_quality,
           CASE WHEN lc.quality IS NOT NULL THEN lc.cost_usd ELSE bc.cost_usd END AS chosen_cost,
           coalesce(lr.quality, br.quality) AS reference_quality,
           CASE WHEN lr.quality IS NOT NULL THEN lr.cost_usd ELSE br.cost_usd END AS reference_cost
    FROM routed r
    LEFT JOIN logged lc ON lc.query_id = r.query_id AND lc.model = r.chosen_model
    LEFT JOIN bench bc ON bc.prompt_id = r.prompt_id AND bc.model = r.chosen_model
    LEFT JOIN logged lr ON lr.query_id = r.query_id AND lr.model = $reference
    LEFT JOIN bench br ON br.prompt_id = r.prompt_id AND br.model = $reference
)
SELECT (SELECT count(*) FROM routed) AS routed,
       count(*) AS queries,
       avg(chosen_quality) AS quality,
       sum(chosen_cost) AS cost_usd,
       avg(reference_quality) AS reference_quality,
       sum(reference_cost) AS reference_cost_usd
FROM pairs
WHERE chosen_quality IS NOT NULL AND reference_quality IS NOT NULL;
