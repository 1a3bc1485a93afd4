SELECT count(*) FROM embeddings WHERE encoder = $encoder;
