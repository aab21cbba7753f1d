"""scripts/ray_wait_nodes.py against a real two-node Ray cluster on this machine (head and worker are separate
raylets, each with the ``npo_node:<name>`` resource that run_npo.sh gives a Slurm node)."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
ENV = dict(os.environ, RAY_AUTH_MODE="disabled")
ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["start", "--block", "--num-cpus=1", "--disable-usage-stats"]
    logs = tmp_path_factory.mktemp("ray")
    head = subprocess.Popen(
        [RAY, *common, "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
         "--num-gpus=1", '--resources={"npo_node:node-a": 1}'],
        env=ENV, stdout=open(logs / "head.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(5)
    worker = subprocess.Popen(
        [RAY, *common, f"--address={address}", "--num-gpus=0", '--resources={"npo_node:node-b": 1}'],
        env=ENV, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    yield address
    for proc in (worker, head):
        proc.terminate()
        proc.wait(timeout=60)
    # the killed head leaves its address behind; a later ray.init() on this machine would try to join it
    if ADDRESS_FILE.exists() and ADDRESS_FILE.read_text().strip() == address:
        ADDRESS_FILE.unlink()


def wait(address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/ray_wait_nodes.py", f"--address={address}", *args],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_returns_once_every_node_has_joined(two_nodes):
    proc = wait(two_nodes, "--nodes", "node-a", "node-b", "--timeout=60")
    assert proc.returncode == 0, proc.stderr
    assert "all 2 Ray nodes joined" in proc.stdout


def test_names_the_nodes_that_never_joined(two_nodes):
    proc = wait(two_nodes, "--nodes", "node-a", "node-b", "node-c", "node-d", "--timeout=3")
    assert proc.returncode == 1
    assert "not joined: node-c, node-d" in proc.stderr
    assert "node-a" not in proc.stderr and "node-b" not in proc.stderr


def test_names_the_nodes_with_too_few_gpus(two_nodes):
    proc = wait(two_nodes, "--nodes", "node-a", "node-b", "--gpus-per-node=1", "--timeout=3")
    assert proc.returncode == 1
    assert "fewer than 1 GPUs: node-b (0 GPUs)" in proc.stderr


def test_names_the_nodes_at_another_address(two_nodes):
    proc = wait(two_nodes, "--nodes", "node-a=10.9.9.9", "node-b", "--timeout=3")
    assert proc.returncode == 1
    assert re.search(r"at another address: node-a \(\S+, expected 10\.9\.9\.9\)", proc.stderr), proc.stderr
    assert "node-b" not in proc.stderr


def test_reports_where_each_node_joined(two_nodes):
    proc = wait(two_nodes, "--nodes", "node-a", "node-b", "--timeout=60")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"all 2 Ray nodes joined \(0 GPUs each\): node-a=\S+ node-b=\S+$", proc.stdout.strip())


def test_a_head_that_never_opens_its_port_fails_at_the_timeout():
    """Without the head, ray.init would retry for many minutes: the wait gives up at its own timeout, saying why."""
    proc = wait(f"127.0.0.1:{free_port()}", "--nodes", "node-a", "--timeout=3")
    assert proc.returncode == 1
    assert "did not open its port in 3 s" in proc.stderr
