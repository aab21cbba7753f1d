"""Multimodal answer checking, usable as a verl reward function and as a standalone evaluator.

Importing this package is cheap (standard library only); sympy, mathruler and math-verify are loaded only inside
the symbolic worker processes, and transformers / vLLM only by `verifiers.evaluate`.
"""

from verifiers.check import Item, verify, verify_batch
from verifiers.compare import Tolerance
from verifiers.result import VerifyResult

__all__ = ["Item", "Tolerance", "VerifyResult", "verify", "verify_batch"]
