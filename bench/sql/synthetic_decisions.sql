-- bench/snapshot_history.py: $rows synthetic routing decisions, three model versions' decisions for each of
-- queries q0 … q($rows / 3) (11 models, random predictions, one decision a second); synthetic_backlog.sql puts
-- those queries in the backlog, so that the snapshot export (the decisions and the views built on
-- latest_decisions) can be timed against a long history.
INSERT INTO routing_decisions
SELECT 'q' || (i // 3), 'v' || (i % 3), 'attention', 'model-' || (i % 11), random(), random() / 100,
       'exponential', 1.0, random(), NULL, 'run-' || (i // 100000), TIMESTAMP '2026-01-01' + to_seconds(i),
       'lambda=1'
FROM range($rows) AS t(i);
