INSERT INTO ingest_runs (run_id, kind, file, sha256, source_rows, rows_in, rows_ok, rows_new, rows_quarantined,
                         started_at, finished_at, rows_gx_validated)
VALUES ($run_id, $kind, $file, $sha256, $source_rows, $rows_in, $rows_ok, $rows_new, $rows_quarantined,
        $started, $now, $rows_gx_validated);
