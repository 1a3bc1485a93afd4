-- New prompts of the staged batch. staged_prompts holds one record per prompt_id (its first in the file).
INSERT INTO prompts (prompt_id, text, n_chars, task, source, first_seen)
SELECT prompt_id, prompt, length(prompt), task, $source, $now
FROM staged_prompts s
WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = s.prompt_id);
