"""NPO recipe: RayNPOTrainer, its Hydra config and entry point."""
