"""ExGRPO (arXiv 2510.02245) on the NPO recipe's backbone: the run's own successes replayed on experience questions."""
