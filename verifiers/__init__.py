"""Multimodal answer checking, usable as a verl reward function and as a standalone evaluator."""
