-- The ingest bench's lower bound, step 3 of 3: every record into the store's outcomes table.
INSERT INTO outcomes (source, sample_key, model, prompt_id, quality, cost_usd, split, task, ts, latency_ms,
                      tokens_in, tokens_out, ingest_run_id, ingested_at)
SELECT 'logs', request_id, model, prompt_id, quality, cost_usd, 'train', task, ts::TIMESTAMPTZ, NULL, NULL, NULL,
       'bound', now()::TIMESTAMP
FROM bound_staged;
