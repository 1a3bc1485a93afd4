SELECT * FROM price_history;
