-- Benches: write what the untimed preparation left in the WAL to the file, so that a timed phase does not pay
-- for it.
CHECKPOINT;
