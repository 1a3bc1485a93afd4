DROP TABLE IF EXISTS bench_floor;
