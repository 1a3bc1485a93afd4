-- The newest gate decision about a version (manual and external moves of the alias are not gates).
SELECT promoted, reason FROM promotions
WHERE registered_model = $registered_model AND challenger = $challenger AND kind = 'gate'
ORDER BY decided_at DESC LIMIT 1;
