SELECT * FROM daily_spend;
