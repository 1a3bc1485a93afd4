-- The embed task's cache key: changes whenever a prompt is added, and whenever the encoder's stored vectors change
-- (embedded, replaced under another representation or template, deleted), e.g. by `routerctl embed` under other
-- settings or by the step itself. So a hit means the step already ran on exactly this state (its result then is
-- that run's, a run that found nothing to do whenever the state did not change since), never older vectors kept.
SELECT (SELECT count(*) || '-' || coalesce(max(first_seen)::VARCHAR, '') || '-' || coalesce(bit_xor(hash(prompt_id)), 0)
        FROM prompts)
       || '/' ||
       (SELECT count(*) || '-' || coalesce(max(embedded_at)::VARCHAR, '') || '-'
               || coalesce(bit_xor(hash(prompt_id || '|' || coalesce(representation, '') || '|'
                                         || coalesce(template_id, ''))), 0)
        FROM embeddings WHERE encoder = $encoder);
