-- promotions records every change of the champion, not only the gates': `kind` says who moved the alias.
--   gate      the nightly's or an onboarding's champion/challenger gate (every row before this migration)
--   manual    `routerctl models promote VERSION`
--   rollback  `routerctl models rollback`
--   external  found by routing: the registry's champion differed from the last one recorded here (the alias was
--             moved in MLflow itself, or a command died between moving it and recording the move)
-- Only gate rows carry AIQs; the other kinds record champion_before/champion_after and the reason.
ALTER TABLE promotions ADD COLUMN kind VARCHAR DEFAULT 'gate';
UPDATE promotions SET kind = 'gate' WHERE kind IS NULL;

CREATE OR REPLACE VIEW champion_history AS
SELECT decided_at, registered_model, kind, challenger, champion_before, champion_after, promoted,
       challenger_aiq, champion_aiq, baseline_aiq, baseline_se, reason, flow_run_id
FROM promotions
ORDER BY decided_at DESC;
