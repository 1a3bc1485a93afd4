-- Staged queries whose query_id is already stored, with the stored row's rowid (see outcome_hits.sql).
CREATE OR REPLACE TEMP TABLE staged_hits AS
SELECT s._idx, b.rowid AS stored_row
FROM staged s
JOIN backlog b USING (query_id);
