INSERT INTO prompts SELECT * FROM bench_frame;
