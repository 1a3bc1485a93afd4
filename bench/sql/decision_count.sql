SELECT count(*) FROM routing_decisions;
