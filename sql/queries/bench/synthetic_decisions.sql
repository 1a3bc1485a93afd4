-- bench/snapshot_history.py: $rows synthetic routing decisions (11 models, 3 model versions, random
-- predictions, one decision a second), so that the snapshot export can be timed against a long history.
INSERT INTO routing_decisions
SELECT 'q' || i, 'v' || (i % 3), 'attention', 'model-' || (i % 11), random(), random() / 100, 'exponential',
       1.0, random(), NULL, 'run-' || (i // 100000), TIMESTAMP '2026-01-01' + to_seconds(i)
FROM range($rows) AS t(i);
