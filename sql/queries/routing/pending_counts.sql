SELECT count(*) AS pending, count(*) FILTER (WHERE NOT embedded) AS unembedded FROM route_pending;
