-- Vectors stored before their encoder's weights were recorded (migration 014) take the weights found now.
UPDATE embeddings SET encoder_weights = $weights WHERE encoder = $encoder AND encoder_weights IS NULL;
