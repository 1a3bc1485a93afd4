-- bench/vector_storage.py: the vectors as the embeddings table stores them (a FLOAT list per row).
CREATE TABLE vectors AS SELECT id, vector::FLOAT[] AS vector FROM bench_vectors;
CHECKPOINT;
