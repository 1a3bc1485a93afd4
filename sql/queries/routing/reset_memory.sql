RESET memory_limit;
RESET disabled_optimizers;
