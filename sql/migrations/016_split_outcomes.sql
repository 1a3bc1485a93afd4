-- The rule of which outcomes train, in one place: a prompt that appears in the test split never trains (whatever
-- source observed it), so its train rows serve no split (split NULL here). Training, its warnings and the drift
-- check read outcomes through this view; every other column is the outcome's own.
CREATE VIEW split_outcomes AS
SELECT o.* REPLACE (
    CASE WHEN o.split = 'train'
              AND EXISTS (SELECT 1 FROM outcomes t WHERE t.split = 'test' AND t.prompt_id = o.prompt_id)
         THEN NULL ELSE o.split END AS split)
FROM outcomes o;
