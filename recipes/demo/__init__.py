"""Tiny local assets for the CPU demo and tests: a random Qwen3-VL, its tokenizer, a shapes dataset."""
