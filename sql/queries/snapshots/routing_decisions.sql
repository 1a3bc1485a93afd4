SELECT * FROM routing_decisions;
