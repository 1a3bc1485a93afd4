-- The vectors of the pending units' prompts, read as a stream of Arrow batches: embeddings is the probe side
-- of a semi-join (the build side is the small set of pending prompt ids), unordered, so no vector is
-- materialised beyond the batch being read.
SELECT e.prompt_id, e.vector
FROM embeddings e
WHERE e.encoder = $encoder
  AND e.prompt_id IN (
      SELECT prompt_id FROM route_pending
      WHERE embedded
        AND ($lo IS NULL OR prompt_id >= $lo)
        AND ($hi IS NULL OR prompt_id < $hi)
  );
