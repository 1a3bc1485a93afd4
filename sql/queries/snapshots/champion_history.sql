SELECT * FROM champion_history;
