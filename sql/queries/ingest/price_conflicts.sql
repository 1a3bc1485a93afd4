-- Staged prices whose (model, effective_from) is already stored with another price (staged_hits: price_hits.sql).
-- The stored price stands: a change of price is a new effective date.
SELECT s._idx,
       'conflicts with the stored price of this model and effective_from from ingest run ' || p.ingest_run_id
       || ' (a new price takes a new effective_from)' AS reason
FROM staged_hits h
JOIN staged s USING (_idx)
JOIN prices p ON p.rowid = h.stored_row
WHERE p.pricing IS DISTINCT FROM s.pricing
   OR p.input_per_1k IS DISTINCT FROM s.input_per_1k
   OR p.output_per_1k IS DISTINCT FROM s.output_per_1k
   OR p.per_call IS DISTINCT FROM s.per_call
   OR p.currency IS DISTINCT FROM s.currency;
