SELECT * FROM policy_runs;
