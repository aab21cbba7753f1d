"""Run verl 0.9.1's real trainer on a CPU-only machine: a platform plugin and a transformers rollout."""
