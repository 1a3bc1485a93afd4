-- The models a scenario run left out of the pool (ROUTER_POOL_EXCLUDE, `routerctl scenarios --exclude-model`):
-- sorted, comma-separated, as the decisions' policy key writes them; '' when none. Runs stored before have ''.
ALTER TABLE routing_scenarios ADD COLUMN excluded VARCHAR DEFAULT '';
