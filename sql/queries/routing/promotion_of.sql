SELECT promoted, reason FROM promotions
WHERE registered_model = $registered_model AND challenger = $challenger
ORDER BY decided_at DESC LIMIT 1;
