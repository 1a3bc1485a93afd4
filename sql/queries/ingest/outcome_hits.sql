-- Staged records whose key (source, sample_key, model) is already stored, with the stored row's rowid.
-- The one pass over the stored keys that the ingest makes for outcomes: the conflict check reads the few
-- matched rows by rowid, and the insert skips them, so neither scans the stored table again (the key columns
-- are all this reads of the history; bench/ingest_history.py measures what it costs).
CREATE OR REPLACE TEMP TABLE staged_hits AS
SELECT s._idx, o.rowid AS stored_row
FROM staged s
JOIN outcomes o USING (source, sample_key, model);
