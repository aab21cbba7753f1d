"""``bash scripts/run_npo.sh --demo`` on a real 2-node Slurm (network namespaces, see conftest.py): one Ray node per
Slurm node at its own address, training ranks on both, a stop request in the middle of guide collection, a node that
dies, a client without the job's token, and two jobs on one node."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEP_LINE = re.compile(r"\[npo\] step=(\d+) phase=(\w+)")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def submit(cluster, out_dir: Path, *args: str, extra_env: dict | None = None) -> str:
    env = dict(cluster.env, OUT_DIR=str(out_dir), PYTHON=sys.executable, **(extra_env or {}))
    proc = subprocess.run(
        ["bash", "scripts/run_npo.sh", "--demo", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return re.search(r"submitted job (\d+)", proc.stdout).group(1)


def job_log(out_dir: Path, job: str) -> str:
    return (out_dir / "logs" / f"slurm-{job}.out").read_text()


def kept_steps(log: str) -> list[int]:
    """The kept (non-look-ahead) steps in the order the trainer reported them."""
    return [int(step) for step, phase in STEP_LINE.findall(log) if phase != "lookahead"]


def wait_for_line(path: Path, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(pattern, path.read_text()) if path.exists() else None
        if match:
            return match
        assert time.monotonic() < deadline, f"no '{pattern}' in {path} after {timeout:g} s"
        time.sleep(0.5)


def only_slurmd_left(cluster) -> dict[str, list[str]]:
    """Per node, whatever runs in its namespace besides its slurmd (should be nothing once a job ended)."""
    return {node: [c for c in cluster.processes(node) if not c.startswith("slurmd")] for node in cluster.nodes}


def wait_until_idle(cluster, timeout: float = 60) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    while any(only_slurmd_left(cluster).values()) and time.monotonic() < deadline:
        time.sleep(1)
    return only_slurmd_left(cluster)


@pytest.fixture(scope="module")
def two_node_job(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_nodes")
    job = submit(cluster, out, "--nodes", "2")
    info = cluster.wait(job, lambda j: j["JobState"] in FINAL, timeout=900)
    return out, job, info, job_log(out, job)


def test_a_two_node_demo_runs_with_a_ray_node_and_a_training_rank_on_each_node(cluster, two_node_job):
    out, job, info, log = two_node_job
    assert info["JobState"] == "COMPLETED", log[-4000:]
    node1, node2 = cluster.address("node1"), cluster.address("node2")
    assert f"all 2 Ray nodes joined (1 GPUs each): node1={node1} node2={node2}" in log
    assert f"[npo] training ranks: 0@{node1} 1@{node2}" in log
    assert kept_steps(log) == list(range(1, 9))
    actor = out / "checkpoints" / "global_step_8" / "actor"
    assert {p.name for p in actor.glob("model_world_size_2_rank_*.pt")} == {
        "model_world_size_2_rank_0.pt",
        "model_world_size_2_rank_1.pt",
    }
    for node in cluster.nodes:
        assert (out / "logs" / f"ray-{node}-{job}.log").exists()  # one Ray log per node
    assert not list((out / "logs").glob(".ray-token-*")), "the job's token is removed with its cluster"
    assert wait_until_idle(cluster) == {node: [] for node in cluster.nodes}, "nothing of the job is left running"


def test_usr1_inside_guide_collection_stops_between_batches_requeues_and_resumes_there(cluster, two_node_job, tmp_path):
    out = tmp_path / "stopped"
    # one fork at step 1 whose 3 window batches take long enough (48 samples per prompt) to signal between them
    job = submit(
        cluster, out, "--nodes", "2", "trainer.total_training_steps=5", "npo.interventions=[{at_step:1,delta:3}]",
        "npo.guide_n=48",
    )  # fmt: skip
    log_path = out / "logs" / f"slurm-{job}.out"
    wait_for_line(log_path, r"collected guides for window batch 1 of 3", timeout=600)
    cluster.run("scancel", "--batch", "--signal=USR1", job)
    info = cluster.wait(job, lambda j: j["JobState"] in FINAL and int(j["Restarts"]) >= 1, timeout=900)
    log = log_path.read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert info["Restarts"] == "1"
    assert "[run_npo] USR1 received" in log
    stop = re.search(r"stop requested in the fork at step 1 \(collect: (\d) of 3 window batches collected\)", log)
    assert stop, log[-4000:]
    assert "stopping after kept step 1 for requeue" in log
    assert "the trainer stopped for requeue (exit status 75); requeueing job" in log
    collected = int(stop.group(1))
    resumed = log[log.index("restart=1") :]
    # the requeued run collects only the batches that were missing, then trains on: every kept step exactly once
    assert re.findall(r"collected guides for window batch (\d) of 3", resumed) == [
        str(i) for i in range(collected + 1, 4)
    ]
    assert kept_steps(log) == [1, 2, 3, 4, 5]
    state = json.loads((out / "checkpoints" / "global_step_5" / "npo_state.json").read_text())
    assert state["phase"] == "idle"


def ray_client(address: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    """A Ray client from outside the job (the root namespace reaches every node) that runs one task."""
    code = "import ray; ray.init(address=%r, log_to_driver=False); print(ray.get(ray.remote(lambda: 'ran').remote()))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(extra_env)
    return subprocess.run([sys.executable, "-c", code % address], env=env, capture_output=True, text=True, timeout=120)


def test_only_token_holders_reach_the_jobs_ray_and_a_dead_node_fails_the_job_fast(cluster, two_node_job, tmp_path):
    out = tmp_path / "node_dies"
    job = submit(cluster, out, "--nodes", "2", "trainer.total_training_steps=50")
    log_path = out / "logs" / f"slurm-{job}.out"
    head = wait_for_line(log_path, r"Ray head node1 at (\S+) ", timeout=300).group(1)
    wait_for_line(log_path, r"\[npo\] step=1 ", timeout=600)

    stranger = ray_client(head, {"RAY_AUTH_MODE": "disabled"})
    assert stranger.returncode != 0 and "ran" not in stranger.stdout
    assert re.search(r"auth|token", stranger.stdout + stranger.stderr, re.I), stranger.stderr[-2000:]
    token = out / "logs" / f".ray-token-{job}"
    assert oct(token.stat().st_mode & 0o777) == "0o600"
    holder = ray_client(head, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)})
    assert holder.returncode == 0 and holder.stdout.strip().endswith("ran"), holder.stderr[-2000:]

    killed = time.monotonic()
    cluster.kill_node("node2")
    try:
        info = cluster.wait(job, lambda j: j["JobState"] in FINAL, timeout=120)
        failed_after = time.monotonic() - killed
        log = log_path.read_text()
        assert info["JobState"] == "FAILED", log[-3000:]
        assert "[run_npo] error: Ray on node node2 stopped" in log
        assert failed_after < 60, f"the job took {failed_after:.0f} s to fail"  # Slurm alone: node down after 25 s
        assert wait_until_idle(cluster) == {node: [] for node in cluster.nodes}
    finally:
        cluster.restart_slurmd("node2")


def test_two_jobs_on_one_node_take_separate_ray_ports(cluster, two_node_job, tmp_path):
    """Each job is the GRPO demo with two training ranks on its one node."""
    on_node1 = {"SBATCH_EXTRA": "-w node1"}
    grpo = ("--recipe", "grpo", "--gpus-per-node", "2", "trainer.total_training_steps=2")
    jobs = [(out, submit(cluster, out, *grpo, extra_env=on_node1)) for out in (tmp_path / "first", tmp_path / "second")]
    ports = []
    for out, job in jobs:
        info = cluster.wait(job, lambda j: j["JobState"] in FINAL, timeout=900)
        log = job_log(out, job)
        assert info["JobState"] == "COMPLETED", log[-3000:]
        assert info["NodeList"] == "node1"
        assert f"[npo] training ranks: 0@{cluster.address('node1')} 1@{cluster.address('node1')}" in log
        ports.append(int(re.search(r"Ray head node1 at \S+:(\d+) ", log).group(1)))
    assert abs(ports[0] - ports[1]) >= 400, ports  # disjoint blocks: GCS, agents, worker range


def test_a_ray_port_in_use_on_a_node_fails_the_job_before_ray_starts(cluster, two_node_job, tmp_path):
    port = 29000
    listener = subprocess.Popen(
        cluster.in_node(
            "node2", sys.executable, "-c",
            f"import socket, time; s = socket.socket(); s.bind(('', {port + 3})); s.listen(); print('up', flush=True); "
            "time.sleep(600)",
        ),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout.readline().strip() == "up"
        out = tmp_path / "busy"
        job = submit(cluster, out, "--nodes", "2", "--ray-port", str(port))
        info = cluster.wait(job, lambda j: j["JobState"] in FINAL, timeout=300)
    finally:
        listener.kill()
        listener.wait()
    log = job_log(out, job)
    assert info["JobState"] == "FAILED"
    assert f"error: Ray port block at {port} is in use (node2:{port + 3} )" in log
    assert "Ray nodes joined" not in log


def test_inside_salloc_the_launcher_moves_onto_the_allocation_and_runs_there(cluster, two_node_job, tmp_path):
    """salloc's shell runs where salloc was called (here the root namespace, a login node's stand-in): the launcher
    must not make it Ray's head."""
    out = tmp_path / "salloc"
    env = dict(cluster.env, OUT_DIR=str(out), PYTHON=sys.executable)
    proc = subprocess.run(
        ["salloc", "--nodes=2", "--cpus-per-task=1", "bash", "scripts/run_npo.sh", "--demo", "--recipe", "grpo",
         "trainer.total_training_steps=2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "[run_npo] inside salloc on" in log and "running the launcher on node1" in log
    node1, node2 = cluster.address("node1"), cluster.address("node2")
    assert f"all 2 Ray nodes joined (1 GPUs each): node1={node1} node2={node2}" in log
    assert kept_steps(log) == [1, 2]
    assert wait_until_idle(cluster) == {node: [] for node in cluster.nodes}
