-- Changes whenever a prompt is added: the embed task's cache key.
SELECT count(*) || '-' || coalesce(max(first_seen)::VARCHAR, '') || '-' || coalesce(bit_xor(hash(prompt_id)), 0)
FROM prompts;
