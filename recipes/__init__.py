"""verl recipes: thin glue between verl 0.9.1's RayPPOTrainer and the engine-free logic in npo_ext."""
