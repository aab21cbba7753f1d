"""RLEP (arXiv 2507.07451): an earlier run's verified-correct responses appended to GRPO groups, on the NPO backbone."""
