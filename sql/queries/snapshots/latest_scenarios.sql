SELECT * FROM latest_scenarios;
