SELECT * FROM training_history;
