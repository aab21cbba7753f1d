"""LUFFY (arXiv 2504.14945) as a guidance source on the NPO recipe's GRPO backbone."""
