-- The routing bench's floor: copy the rows routing reads (every backlog query with its length and vector).
CREATE TABLE bench_floor AS
SELECT b.query_id, b.task, p.n_chars, e.vector
FROM backlog b JOIN prompts p USING (prompt_id) JOIN embeddings e ON e.prompt_id = b.prompt_id;
