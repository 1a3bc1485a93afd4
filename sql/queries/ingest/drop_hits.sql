DROP TABLE IF EXISTS staged_hits;
