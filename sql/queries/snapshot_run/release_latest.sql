-- After the snapshots are written: the views read the stored tables again (see hold_latest.sql).
DROP TABLE IF EXISTS temp.latest_decisions;
