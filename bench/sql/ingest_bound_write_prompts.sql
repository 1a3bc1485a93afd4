-- The ingest bench's lower bound, step 2 of 3: every prompt into the store's prompts table (the bench's prompts
-- are all distinct, so no deduplication is needed here).
INSERT INTO prompts (prompt_id, text, n_chars, task, source, first_seen)
SELECT prompt_id, prompt, length(prompt), task, 'logs', now()::TIMESTAMP FROM bound_staged;
