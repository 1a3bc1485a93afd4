INSERT INTO embeddings SELECT * FROM bench_frame;
