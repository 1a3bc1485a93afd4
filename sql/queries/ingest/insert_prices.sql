-- The staged prices whose (model, effective_from) is not stored yet (staged_hits: price_hits.sql).
INSERT INTO prices (model, effective_from, pricing, input_per_1k, output_per_1k, per_call, currency, ingest_run_id,
                    ingested_at)
SELECT model, effective_from, pricing, input_per_1k, output_per_1k, per_call, currency, $run_id, $now
FROM staged s
WHERE NOT EXISTS (SELECT 1 FROM staged_hits h WHERE h._idx = s._idx);
