INSERT INTO backlog SELECT * FROM bench_frame;
