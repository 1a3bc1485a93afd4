SELECT model, effective_from, pricing, input_per_1k, output_per_1k, per_call, currency, ingest_run_id
FROM prices
ORDER BY model, effective_from;
