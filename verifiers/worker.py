"""Symbolic-check worker process: mathruler, then math-verify, on the worker's own main thread.

Started by `verifiers.pool` as `python -m verifiers.worker`. Protocol, one JSON object per line: the parent writes
`{"gold": …, "pred": …}`, the worker answers `{"correct": …, "method": …, "reason": …}`, after first printing `ready`
once its imports are done. The address space is capped (RLIMIT_AS); running out of it ends the process, which the
parent reports as `crash` and replaces. Library timeouts are disabled: the parent's deadline kills an overrunning
worker, which, unlike SIGALRM, also stops C-level big-integer work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
from collections.abc import Callable

Checker = Callable[[str, str], bool]


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _mathruler() -> Checker:
    from mathruler.grader import grade_answer

    return lambda gold, pred: bool(grade_answer(pred, gold))


def _math_verify() -> Checker:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def check(gold: str, pred: str) -> bool:
        parsed_gold = parse("\\boxed{" + gold + "}", parsing_timeout=None)
        if not parsed_gold:
            return False
        parsed_pred = parse("\\boxed{" + pred + "}", parsing_timeout=None)
        return bool(parsed_pred) and bool(verify(parsed_gold, parsed_pred, timeout_seconds=None))

    return check


_BACKENDS = {"mathruler": _mathruler, "math_verify": _math_verify}


def load_backends(names: list[str]) -> list[tuple[str, Checker]]:
    """The requested graders that are installed, in order (mathruler is strict and fast, so it goes first)."""
    loaded = []
    for name in names:
        try:
            loaded.append((name, _BACKENDS[name]()))
        except ImportError:
            continue
    return loaded


def check(gold: str, pred: str, backends: list[tuple[str, Checker]]) -> dict:
    """First grader to accept wins; the gold answer is always parsed first."""
    for name, accepts in backends:
        if accepts(gold, pred):
            return {"correct": True, "method": name, "reason": "equivalent"}
    return {"correct": False, "method": backends[-1][0] if backends else "none", "reason": "not_equivalent"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--backends", default="mathruler,math_verify")
    args = parser.parse_args(argv)
    # The protocol owns the original stdout; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    _limit_memory(args.memory_mb)
    backends = load_backends(args.backends.split(","))
    protocol.write(b"ready\n")
    for line in sys.stdin.buffer:
        try:
            task = json.loads(line)
            reply = check(str(task["gold"]), str(task["pred"]), backends)
        except MemoryError:
            os._exit(3)
        except Exception as exc:  # a grader bug must cost one answer, not the worker
            reply = {"correct": False, "method": "symbolic", "reason": f"error: {type(exc).__name__}"}
        protocol.write(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    main()
