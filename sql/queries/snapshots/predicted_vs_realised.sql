SELECT * FROM predicted_vs_realised;
