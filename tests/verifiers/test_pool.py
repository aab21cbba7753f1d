"""The symbolic worker pool: deadline kills, crashes, the memory cap, concurrency, and task order."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from verifiers.pool import WorkerPool

HANGS = {"gold": "\\sqrt{2}", "pred": "(10**7)!"}  # sympy computes a 65-million-digit factorial: minutes
EASY_TRUE = {"gold": "\\frac{1}{2}", "pred": "0.5"}
EASY_FALSE = {"gold": "5", "pred": "6"}


@pytest.mark.slow
def test_overrun_is_killed_and_the_pool_keeps_serving(symbolic_pool) -> None:
    results = symbolic_pool.run([EASY_TRUE, HANGS, EASY_FALSE, EASY_TRUE])
    assert [r["reason"] for r in results] == ["equivalent", "timeout", "not_equivalent", "equivalent"]
    assert [r["correct"] for r in results] == [True, False, False, True]
    assert symbolic_pool.run([EASY_TRUE])[0]["correct"] is True


def test_dead_worker_gives_crash_then_is_replaced() -> None:
    pool = WorkerPool(size=1, timeout=10.0)
    try:
        pool.start()
        (worker,) = pool._idle
        worker.proc.kill()
        worker.proc.wait()
        assert pool.run([EASY_TRUE]) == [{"correct": False, "method": "symbolic", "reason": "crash"}]
        assert pool.run([EASY_TRUE])[0]["correct"] is True
    finally:
        pool.close()


def test_worker_that_cannot_start_gives_crash() -> None:
    pool = WorkerPool(size=1, timeout=10.0, backends="no_such_grader")
    try:
        assert [r["reason"] for r in pool.run([EASY_TRUE, EASY_FALSE])] == ["crash", "crash"]
    finally:
        pool.close()


def test_workers_run_under_the_address_space_cap() -> None:
    pool = WorkerPool(size=1, timeout=10.0, memory_mb=640)
    try:
        pool.start()
        (worker,) = pool._idle
        limits = Path(f"/proc/{worker.proc.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max address space"))
        assert line.split()[3] == str(640 * 1024 * 1024)
        # A memory bomb inside the worker fails there, not in the caller.
        reply = pool.run([{"gold": "5", "pred": "2**(10**10)"}])[0]
        assert reply["correct"] is False
        assert pool.run([EASY_TRUE])[0]["correct"] is True
    finally:
        pool.close()


def test_threads_share_the_pool(symbolic_pool) -> None:
    outcomes: dict[int, list[dict]] = {}

    def work(n: int) -> None:
        outcomes[n] = symbolic_pool.run([EASY_TRUE, EASY_FALSE] * 3)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all([r["correct"] for r in results] == [True, False] * 3 for results in outcomes.values())
    assert len(outcomes) == 4


def test_empty_batch(symbolic_pool) -> None:
    assert symbolic_pool.run([]) == []
