-- prompt_id of every staged record, computed once per file: first 32 hex chars of sha256(text).
SELECT _idx, substr(sha256(prompt), 1, 32) AS prompt_id FROM staged_text;
