"""Conversion of MMFineReason and evaluation benchmarks into verl's RL parquet format."""
