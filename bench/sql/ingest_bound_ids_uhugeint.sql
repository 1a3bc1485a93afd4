-- bench/ingest_bound_ids.py: the lower bound with 16-byte prompt ids. The empty store's prompts and outcomes
-- hold prompt_id as UHUGEINT (the same 128 bits as the 32 hex characters) instead of VARCHAR.
ALTER TABLE prompts ALTER COLUMN prompt_id SET DATA TYPE UHUGEINT;
ALTER TABLE outcomes ALTER COLUMN prompt_id SET DATA TYPE UHUGEINT;
