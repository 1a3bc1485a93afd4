-- Session settings while routing streams the backlog:
-- * cap DuckDB's buffer pool (512 MB): scanned vector blocks would otherwise stay cached up to DuckDB's default (80% of
--   RAM); with the cap peak RSS stays under 2 GB for a 1M-query backlog (docs/performance.md); DuckDB spills
--   to disk if an operator ever needs more;
-- * keep the written join sides: the optimizer would otherwise build the hash table of the pending_vectors
--   semi-join on the embeddings side, i.e. materialise every pending vector before the first batch.
SET memory_limit = '512MB';
SET disabled_optimizers = 'build_side_probe_side';
