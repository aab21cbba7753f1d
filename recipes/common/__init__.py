"""Glue shared by the recipes: reward scoring in the driver."""
