SELECT (SELECT count(*) FROM outcomes), (SELECT count(DISTINCT prompt_id) FROM outcomes);
