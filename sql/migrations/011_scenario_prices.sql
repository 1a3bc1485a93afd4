-- The price factors a scenario run rescaled the champion's predicted costs by (router.prices: the factors other
-- than 1, written as the decisions' policy key writes them, '<model>:<factor>,…'; '' when every factor is 1), so
-- a what-if says which prices it assumed. Runs stored before have ''.
ALTER TABLE routing_scenarios ADD COLUMN prices VARCHAR DEFAULT '';
