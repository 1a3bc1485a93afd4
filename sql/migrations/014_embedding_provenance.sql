-- What made each vector: `encoder_weights`, the hash of the encoder's files (router.encoder.weights_fingerprint;
-- a vector of other weights is stale and re-embedded), and `encoder_variant`, how they were run (torch-fp32,
-- torch-fp16, onnx-fp32, onnx-int8: the same vectors to a cosine of 0.99 or more, never re-embedded for it).
-- Vectors stored before are NULL in both; the next embed step records the weights it finds for their encoder
-- (taken to be the ones that made them) and leaves their variant unknown.
ALTER TABLE embeddings ADD COLUMN encoder_weights VARCHAR;
ALTER TABLE embeddings ADD COLUMN encoder_variant VARCHAR;
