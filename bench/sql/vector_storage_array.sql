-- bench/vector_storage.py: the same vectors as a fixed-size array of the default encoder's dimension.
CREATE TABLE vectors AS SELECT id, vector::FLOAT[384] AS vector FROM bench_vectors;
CHECKPOINT;
