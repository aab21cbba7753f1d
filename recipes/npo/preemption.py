"""Stop-and-requeue on request: the contract between ``scripts/run_npo.sh`` and the trainer.

Under Slurm the batch script receives the time-limit or preemption signal, but the trainer runs inside a Ray actor
(verl's TaskRunner), possibly on another node. So the script does not forward a signal: it creates
``<trainer.default_local_dir>/npo_stop_request`` on the shared filesystem. At the next step boundary the trainer
sees it, makes the run resumable at that boundary, writes ``npo_stopped`` (the last kept step) and stops with
:class:`StoppedForRequeue`; the script then requeues the job, which resumes with ``trainer.resume_mode=auto``.
"""

from __future__ import annotations

from pathlib import Path

STOP_REQUEST_FILE = "npo_stop_request"
STOPPED_FILE = "npo_stopped"


class StoppedForRequeue(Exception):
    """Raised at a step boundary after the run was made resumable there."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped for requeue after step {step}")
        self.step = step


def stop_requested(checkpoint_dir: str | Path) -> bool:
    return (Path(checkpoint_dir) / STOP_REQUEST_FILE).exists()


def mark_stopped(checkpoint_dir: str | Path, step: int) -> None:
    """Tell the launcher the run stopped cleanly after ``step`` (and clear the request, so the resumed run goes on)."""
    folder = Path(checkpoint_dir)
    (folder / STOPPED_FILE).write_text(f"{step}\n")
    (folder / STOP_REQUEST_FILE).unlink(missing_ok=True)
