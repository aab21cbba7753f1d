"""Plain GRPO baseline with the same settings as the NPO recipe."""
