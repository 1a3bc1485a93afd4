-- Models named only by production logs that have fewer than $min_outcomes scored outcomes: no router trains on
-- them or routes to them yet (router.dataset.routable_pool). Benchmark rows (any other source) count at once.
SELECT model
FROM outcomes
GROUP BY model
HAVING count(*) FILTER (WHERE source <> 'logs') = 0 AND count(quality) < $min_outcomes
ORDER BY model;
