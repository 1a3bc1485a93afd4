SELECT * FROM task_mix;
