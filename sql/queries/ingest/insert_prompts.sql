-- New prompts of the staged batch; prompt_id = first 32 hex chars of sha256(text).
INSERT INTO prompts (prompt_id, text, n_chars, task, source, first_seen)
SELECT prompt_id, prompt, length(prompt), task, $source, $now
FROM (
    SELECT substr(sha256(prompt), 1, 32) AS prompt_id, prompt, task,
           row_number() OVER (PARTITION BY substr(sha256(prompt), 1, 32) ORDER BY _idx) AS rn
    FROM staged
) s
WHERE rn = 1
  AND NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_id = s.prompt_id);
