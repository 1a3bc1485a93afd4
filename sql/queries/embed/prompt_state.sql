-- Every stored prompt with its template group (its task, else its source) and the representation, template and
-- encoder weights of its vector for this encoder (NULL when it has none), shortest first (similar lengths batch
-- with less padding). Prompts are keyed by the hash of their text, so a text seen many times (or in several
-- sources) is encoded once.
SELECT p.prompt_id, p.text, coalesce(p.task, p.source) AS template_group,
       e.prompt_id IS NOT NULL AS embedded, e.representation, e.template_id, e.encoder_weights
FROM prompts p
LEFT JOIN embeddings e ON e.prompt_id = p.prompt_id AND e.encoder = $encoder
ORDER BY p.n_chars, p.prompt_id;
