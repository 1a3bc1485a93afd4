DROP TABLE IF EXISTS route_pending;
