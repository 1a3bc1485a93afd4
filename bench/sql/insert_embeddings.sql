INSERT INTO embeddings (prompt_id, encoder, dim, vector, embedded_at) SELECT * FROM bench_frame;
