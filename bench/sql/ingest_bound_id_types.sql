-- The type prompt_id has in prompts and outcomes after a lower-bound write (VARCHAR, or UHUGEINT for 16-byte ids).
SELECT string_agg(DISTINCT data_type, ', ') FROM information_schema.columns
WHERE table_name IN ('prompts', 'outcomes') AND column_name = 'prompt_id';
