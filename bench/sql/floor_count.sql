SELECT count(*) FROM bench_floor;
