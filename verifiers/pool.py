"""A pool of symbolic-check worker processes with a hard per-answer deadline and a memory cap.

Why processes and not signals: verl calls the reward from threads and asyncio executors, where SIGALRM is
unavailable (math-verify then raises or hangs), and sympy's C-level big-integer work cannot be interrupted anyway. A
worker that overruns its deadline is killed (SIGKILL) and replaced; the caller gets `timeout`, and a worker that dies
gives `crash`, never an exception. Workers are plain `python -m verifiers.worker` subprocesses speaking JSON lines
(see `verifiers.worker`), so the pool works in any host: threads, Ray actors, asyncio loops, forked parents, and
scripts without a `__main__` guard. POSIX only (select on pipes, RLIMIT_AS).

Settings, read when a pool is created: VERIFIERS_WORKERS (default min(4, CPUs)), VERIFIERS_TIMEOUT (seconds per
answer, default 5), VERIFIERS_MEMORY_MB (address-space cap per worker, default 2048), VERIFIERS_BACKENDS (default
`mathruler,math_verify`).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

STARTUP_TIMEOUT_S = 120.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def _outcome(reason: str) -> dict:
    return {"correct": False, "method": "symbolic", "reason": reason}


class _Worker:
    """One worker subprocess and the bytes read from it so far."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True
        )
        self.fd = self.proc.stdout.fileno()
        self.buffer = b""
        self.ready = False

    def send(self, task: dict) -> None:
        self.proc.stdin.write(json.dumps(task).encode() + b"\n")
        self.proc.stdin.flush()

    def read_nowait(self) -> bytes | None:
        """One complete line if the pipe has it; raises EOFError when the worker is gone."""
        data = os.read(self.fd, 1 << 16)
        if not data:
            raise EOFError("worker exited")
        self.buffer += data
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                return False
            try:
                self.ready = self.read_nowait() == b"ready"
            except (EOFError, OSError):
                return False
        return True

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class WorkerPool:
    """Thread-safe: any number of threads may call `run` at once; each worker serves one answer at a time."""

    def __init__(
        self,
        size: int | None = None,
        timeout: float | None = None,
        memory_mb: int | None = None,
        backends: str | None = None,
    ) -> None:
        self.size = max(1, size or int(os.environ.get("VERIFIERS_WORKERS", 0)) or min(4, os.cpu_count() or 1))
        self.timeout = timeout or float(os.environ.get("VERIFIERS_TIMEOUT", 5.0))
        memory_mb = memory_mb or int(os.environ.get("VERIFIERS_MEMORY_MB", 2048))
        backends = backends or os.environ.get("VERIFIERS_BACKENDS", "mathruler,math_verify")
        self._command = [
            sys.executable,
            "-m",
            "verifiers.worker",
            "--memory-mb",
            str(memory_mb),
            "--backends",
            backends,
        ]
        path = os.environ.get("PYTHONPATH")
        self._env = dict(os.environ, PYTHONPATH=_PACKAGE_ROOT + (os.pathsep + path if path else ""))
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0
        self._closed = False

    # --- worker bookkeeping ----------------------------------------------------------------------------------
    def _acquire(self, block: bool) -> _Worker | None:
        with self._cond:
            while not self._idle and self._count >= self.size:
                if not block:
                    return None
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return _Worker(self._command, self._env)
        except OSError:
            self._forget()
            raise

    def _forget(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify()

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(worker)
                self._cond.notify()
                return
        worker.kill()
        self._forget()

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker and start its successor now, so its imports overlap with other work."""
        worker.kill()
        if self._closed:
            self._forget()
            return
        try:
            successor = _Worker(self._command, self._env)
        except OSError:
            self._forget()
            return
        with self._cond:
            self._idle.append(successor)
            self._cond.notify()

    # --- public ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every worker and wait until all are ready (optional: `run` starts them on demand)."""
        workers = []
        for _ in range(self.size):
            worker = self._acquire(block=False)
            if worker is None:
                break
            workers.append(worker)
        for worker in workers:
            if worker.wait_ready(STARTUP_TIMEOUT_S):
                self._release(worker)
            else:
                worker.kill()
                self._forget()

    def run(self, tasks: Sequence[dict], timeout: float | None = None) -> list[dict]:
        """Check `{"gold", "pred"}` tasks on all free workers at once; results in task order, never raising."""
        timeout = timeout or self.timeout
        results: list[dict | None] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        inflight: dict[int, tuple[_Worker, int, float]] = {}
        while pending or inflight:
            while pending:
                try:
                    worker = self._acquire(block=not inflight)
                except OSError:
                    results[pending.popleft()] = _outcome("crash")
                    continue
                if worker is None:
                    break
                index = pending.popleft()
                if not worker.wait_ready(STARTUP_TIMEOUT_S):
                    worker.kill()
                    self._forget()
                    results[index] = _outcome("crash")
                    continue
                try:
                    worker.send(tasks[index])
                except OSError:
                    self._replace(worker)
                    results[index] = _outcome("crash")
                    continue
                inflight[worker.fd] = (worker, index, time.monotonic() + timeout)
            if inflight:
                self._collect(inflight, results)
        return results  # type: ignore[return-value]

    def _collect(self, inflight: dict[int, tuple[_Worker, int, float]], results: list[dict | None]) -> None:
        """Wait for the first reply or deadline, take every reply that is in, and kill every overdue worker."""
        wait = max(0.0, min(deadline for _, _, deadline in inflight.values()) - time.monotonic())
        readable = select.select(list(inflight), [], [], wait)[0]
        for fd in readable:
            worker, index, _ = inflight[fd]
            try:
                line = worker.read_nowait()
            except (EOFError, OSError):
                del inflight[fd]
                self._replace(worker)
                results[index] = _outcome("crash")
                continue
            if line is None:
                continue
            del inflight[fd]
            try:
                results[index] = json.loads(line)
            except ValueError:
                self._replace(worker)
                results[index] = _outcome("crash")
                continue
            self._release(worker)
        now = time.monotonic()
        for fd, (worker, index, deadline) in list(inflight.items()):
            if now >= deadline:
                del inflight[fd]
                self._replace(worker)
                results[index] = _outcome("timeout")

    def close(self) -> None:
        """Stop the idle workers now; busy ones stop when their current answer is done."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.kill()


_default: tuple[int, WorkerPool] | None = None
_default_lock = threading.Lock()


def default_pool() -> WorkerPool:
    """The process-wide pool, created on first use (and again in a forked child, which must not share pipes)."""
    global _default
    with _default_lock:
        if _default is None or _default[0] != os.getpid():
            _default = (os.getpid(), WorkerPool())
            atexit.register(_default[1].close)
        return _default[1]
