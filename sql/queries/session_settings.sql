-- Every connection the library opens: no progress bar. DuckDB draws one on stdout for any statement that runs
-- over two seconds, even when stdout is a log file or a pipe (a nightly run's worker, `routerctl` in cron).
SET enable_progress_bar = false;
