-- A first version's gate bar allows for the noise of its AIQ difference to the best baseline (router.registry.gate):
-- promotions records that standard error beside baseline_aiq (NULL for gates before it and for onboarding gates;
-- against a champion it plays no part), and champion_history shows it.
ALTER TABLE promotions ADD COLUMN baseline_se DOUBLE;

CREATE OR REPLACE VIEW champion_history AS
SELECT decided_at, registered_model, challenger, champion_before, champion_after, promoted,
       challenger_aiq, champion_aiq, baseline_aiq, baseline_se, reason, flow_run_id
FROM promotions
ORDER BY decided_at DESC;
