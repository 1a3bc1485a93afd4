-- The newest request date (UTC) among the stored outcomes: the data cut of a training run (router.prices).
SELECT CAST(timezone('UTC', max(ts)) AS DATE) FROM outcomes;
