"""``bash scripts/run_npo.sh --demo`` through a real Slurm: sbatch submission, the Ray bring-up inside the
allocation, and a stop signal inside an NPO fork that checkpoints, requeues and finishes like an uninterrupted run."""

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEP_LINE = re.compile(r"\[npo\] step=(\d+) phase=(\w+)")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def submit(slurm, out_dir: Path, *args: str) -> str:
    proc = subprocess.run(
        ["bash", "scripts/run_npo.sh", "--demo", *args],
        cwd=ROOT,
        env=dict(slurm.env, OUT_DIR=str(out_dir), PYTHON=sys.executable),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return re.search(r"submitted job (\d+)", proc.stdout).group(1)


def kept_steps(log: str) -> list[int]:
    """The kept (non-look-ahead) steps in the order the trainer reported them."""
    return [int(step) for step, phase in STEP_LINE.findall(log) if phase != "lookahead"]


def wait_for_line(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"no '{text}' in {path} after {timeout:g} s"
        time.sleep(0.5)


def final_npo_state(out_dir: Path) -> dict:
    return json.loads((out_dir / "checkpoints" / "global_step_8" / "npo_state.json").read_text())


@pytest.fixture(scope="module")
def plain_job(slurm, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    job = submit(slurm, out)
    info = slurm.wait(job, lambda j: j["JobState"] in FINAL, timeout=600)
    return out, job, info, (out / "logs" / f"slurm-{job}.out").read_text()


def test_a_submitted_demo_runs_to_completion_with_checkpoints(plain_job):
    out, job, info, log = plain_job
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert "[run_npo] all 1 Ray nodes joined" in log
    assert "Connecting to existing Ray cluster" in log
    assert kept_steps(log) == list(range(1, 9))
    assert (out / "checkpoints" / "global_step_8" / "actor").is_dir()
    assert (out / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "8"
    assert (out / "logs" / f"ray-{info['NodeList']}-{job}.log").exists()  # one Ray log per node
    # teardown leaves no pointer to the dead cluster, which a later plain ray.init() on the node would follow
    address_file = Path("/tmp/ray/ray_current_cluster")
    assert not (address_file.exists() and address_file.read_text().strip().endswith(":6379"))


def test_a_stop_signal_in_a_fork_checkpoints_requeues_and_ends_as_an_uninterrupted_run(slurm, plain_job, tmp_path):
    out = tmp_path / "stopped"
    job = submit(slurm, out)
    log_path = out / "logs" / f"slurm-{job}.out"
    wait_for_line(log_path, "phase=lookahead fork", timeout=300)  # the first fork is in flight
    slurm.run("scancel", "--batch", "--signal=USR1", job)
    info = slurm.wait(job, lambda j: j["JobState"] in FINAL and int(j["Restarts"]) >= 1, timeout=600)
    log = log_path.read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert info["Restarts"] == "1"
    assert "[run_npo] USR1 received" in log
    stopped = int(re.search(r"stopped after step (\d+); requeueing job", log).group(1))
    assert 0 <= stopped < 8
    assert log.count("restart=1") == 1  # the requeued run's banner
    # no kept step lost or repeated across the two runs of the job, and the same end state as the plain job
    assert kept_steps(log) == list(range(1, 9))
    assert final_npo_state(out) == final_npo_state(plain_job[0])
    assert (out / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "8"


def test_a_ray_port_in_use_fails_the_job_before_ray_starts(slurm, tmp_path):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        job = submit(slurm, tmp_path / "busy", "--ray-port", str(port))
        info = slurm.wait(job, lambda j: j["JobState"] in FINAL, timeout=300)
    log = (tmp_path / "busy" / "logs" / f"slurm-{job}.out").read_text()
    assert info["JobState"] == "FAILED"
    assert f"error: Ray port {port} on" in log and "is in use" in log
    assert "Ray nodes joined" not in log
