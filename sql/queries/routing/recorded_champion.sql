-- The champion after the newest recorded change of any kind (NULL: none recorded, or the alias was removed).
SELECT champion_after FROM promotions
WHERE registered_model = $registered_model
ORDER BY decided_at DESC LIMIT 1;
