-- Every stored vector (the nightly bench copies the scratch night's vectors into the store of the nights before).
SELECT prompt_id, encoder, dim, vector, embedded_at, representation, template_id FROM embeddings;
