-- bench/snapshot_history.py: backlog queries $first … $first + $queries - 1 of synthetic_decisions.sql (3 tasks).
INSERT INTO backlog
SELECT 'q' || j, md5('prompt ' || j), ['chat', 'code', 'qa'][1 + j % 3], TIMESTAMPTZ '2026-01-01 00:00:00+00',
       'bench', TIMESTAMP '2026-01-01'
FROM range($first, $first + $queries) AS t(j);
