-- The embed bench's repeated runs: every stored vector of the encoder removed (untimed), so the next run
-- encodes the same prompts again.
DELETE FROM embeddings WHERE encoder = $encoder;
