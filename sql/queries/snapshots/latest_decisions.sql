SELECT * FROM latest_decisions;
