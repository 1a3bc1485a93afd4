INSERT INTO outcomes (source, sample_key, model, prompt_id, quality, cost_usd, split, task, ts, latency_ms,
                      tokens_in, tokens_out, ingest_run_id, ingested_at)
SELECT source, sample_key, model, prompt_id, quality, cost_usd, split, task, ts, latency_ms,
       tokens_in, tokens_out, $run_id, $now
FROM staged s
WHERE NOT EXISTS (
    SELECT 1 FROM outcomes o
    WHERE o.source = s.source AND o.sample_key = s.sample_key AND o.model = s.model
);
