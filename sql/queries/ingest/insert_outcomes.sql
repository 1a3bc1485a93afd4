-- The staged records whose key is not stored yet (staged_hits: outcome_hits.sql; stored ones that
-- conflicted were taken out of staged as quarantined, identical ones are skipped here).
INSERT INTO outcomes (source, sample_key, model, prompt_id, quality, cost_usd, split, task, ts, latency_ms,
                      tokens_in, tokens_out, ingest_run_id, ingested_at)
SELECT source, sample_key, model, prompt_id, quality, cost_usd, split, task, ts, latency_ms,
       tokens_in, tokens_out, $run_id, $now
FROM staged s
WHERE NOT EXISTS (SELECT 1 FROM staged_hits h WHERE h._idx = s._idx);
