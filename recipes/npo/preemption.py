"""Stop-and-requeue on request: the contract between ``scripts/run_npo.sh`` and the trainer.

Under Slurm the batch script receives the time-limit or preemption signal (USR1), but the trainer runs inside a Ray
actor (verl's TaskRunner), possibly on another node. So the script does not forward a signal: it creates
``<trainer.default_local_dir>/npo_stop_request`` on the shared filesystem. The trainer looks for it at every step
boundary and between the units of a fork's long phases (each collected guide batch, each probed candidate). It makes
the run resumable there, clears the request and stops with :class:`StoppedForRequeue`; the entry point then exits
with :data:`REQUEUE_EXIT_CODE`, which is how the script knows to requeue (a file would be read moments after another
node wrote it, through a filesystem that may cache its absence). The requeued job resumes with
``trainer.resume_mode=auto``.
"""

from __future__ import annotations

from pathlib import Path

STOP_REQUEST_FILE = "npo_stop_request"
REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"


class StoppedForRequeue(Exception):
    """Raised after the run was made resumable at the point where the stop request was seen."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped for requeue after step {step}")
        self.step = step


def stop_requested(checkpoint_dir: str | Path) -> bool:
    return (Path(checkpoint_dir) / STOP_REQUEST_FILE).exists()


def clear_stop_request(checkpoint_dir: str | Path) -> None:
    """The request is served: the resumed run must not stop again at its first boundary."""
    (Path(checkpoint_dir) / STOP_REQUEST_FILE).unlink(missing_ok=True)


def is_stopped_for_requeue(error: BaseException) -> bool:
    """True for :class:`StoppedForRequeue`, also when Ray re-raises it from the driver task as a ``RayTaskError``."""
    while error is not None:
        if isinstance(error, StoppedForRequeue):
            return True
        error = getattr(error, "cause", None) or error.__cause__
    return False
