-- Before the snapshots are written: compute latest_decisions (a window over every stored decision) once, into
-- a temporary table of the same name. DuckDB resolves names in the temporary catalog first, also inside view
-- bodies, so daily_spend, task_mix and predicted_vs_realised, which are built on latest_decisions, read this
-- table instead of computing the window again each (three times over the whole history). The table holds
-- exactly the view's rows, so each snapshot is what the view gives either way; release_latest.sql drops it.
DROP TABLE IF EXISTS temp.latest_decisions;
CREATE TEMP TABLE latest_decisions AS SELECT * FROM latest_decisions;
