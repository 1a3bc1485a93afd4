-- Staged prices whose key (model, effective_from) is already stored, with the stored row's rowid (see outcome_hits.sql).
CREATE OR REPLACE TEMP TABLE staged_hits AS
SELECT s._idx, p.rowid AS stored_row
FROM staged s
JOIN prices p USING (model, effective_from);
