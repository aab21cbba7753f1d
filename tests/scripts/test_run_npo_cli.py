"""scripts/run_npo.sh without running anything: help, bad input, the batch script and the plan of a 4-node job."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run_npo.sh"


def launch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env or dict(os.environ), capture_output=True, text=True
    )


@pytest.fixture
def with_sbatch(tmp_path):
    """An environment outside any allocation where ``sbatch`` exists (a stub: a dry run never calls it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch must not run in a dry run' >&2; exit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", OUT_DIR=str(tmp_path / "run"))
    return env


def test_the_script_parses_and_shellcheck_is_clean():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (scripts/test.sh installs it)")
    proc = subprocess.run(["shellcheck", *map(str, sorted(SCRIPT.parent.glob("*.sh")))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_help_lists_every_option():
    proc = launch("--help")
    assert proc.returncode == 0
    for option in ("--nodes", "--gpus-per-node", "--recipe", "--config", "--local", "--dry-run", "--ray-port"):
        assert option in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipe", "nope"], "no recipe 'nope'"),
        (["--config", "missing.yaml"], "no config file missing.yaml"),
        (["--bogus"], "unknown option --bogus"),
        (["--rollout", "vllm"], "--rollout only applies to --demo"),
    ],
)
def test_bad_input_fails_before_anything_starts(args, message, with_sbatch):
    proc = launch(*args, "--dry-run", env=with_sbatch)
    assert proc.returncode == 2
    assert message in proc.stderr


GPU_ENV = {"MODEL_PATH": "/models/qwen", "TRAIN_FILES": "/data/train", "VAL_FILES": "/data/val"}


def test_a_dry_run_prints_the_batch_script_and_a_multi_node_plan(with_sbatch):
    env = dict(with_sbatch, **GPU_ENV, NCCL_IB_HCA="mlx5", SBATCH_EXPORT="NONE")
    proc = launch("--nodes", "4", "--gpus-per-node", "8", "--dry-run", "npo.interventions=[]", env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mode=submit" in out and "rollout=from the config (vLLM)" in out
    for line in ("#SBATCH --nodes=4 --ntasks-per-node=1", "#SBATCH --exclusive", "#SBATCH --mem=0",
                 "#SBATCH --gpus-per-node=8", "--requeue", "--signal=B:USR1@600"):  # fmt: skip
        assert line in out
    # the job runs the same command with the same environment, also where sbatch exports nothing
    exec_line = r"^exec bash scripts/run_npo.sh --nodes 4 --gpus-per-node 8 npo.interventions=\\\[\\\]$"
    assert re.search(exec_line, out, re.M)
    for pinned in ("export MODEL_PATH=/models/qwen", "export TRAIN_FILES=/data/train", "export NCCL_IB_HCA=mlx5",
                   "export PATH=", "RAY_AUTH_MODE=token"):  # fmt: skip
        assert pinned in out
    assert ".venv/bin/python" not in out, "a GPU run never takes the CPU environment's interpreter"
    # inside the allocation: addresses from Slurm, a per-job token and port block, the stop contract
    assert "# addresses: the Slurm NodeAddr of each node" in out
    assert "# CPUs: Ray's --num-cpus on each node is what Slurm allocated there" in out
    assert "RAY_AUTH_TOKEN_PATH=" in out and "fresh per job, mode 0600" in out
    assert "# ports: the block of 400 from 20000 + (job id mod 30) x 400" in out
    assert "npo_stop_request; exit status 75 -> scontrol requeue" in out
    ray_starts = [line for line in out.splitlines() if " start --block " in line]
    assert len(ray_starts) == 4
    assert all("--cpus-per-task=ALLOCATED_CPUS --mem=0" in line for line in ray_starts)
    assert all("--num-cpus=ALLOCATED_CPUS" in line and "--min-worker-port=20010" in line for line in ray_starts)
    assert "--head" in ray_starts[0] and "--node-ip-address=NODE1_ADDR" in ray_starts[0]
    assert all("--address=NODE1_ADDR:20000" in line for line in ray_starts[1:])
    assert "GLOO_SOCKET_IFNAME=NODE2_IFACE" in ray_starts[1]
    assert "--nodes NODE1=NODE1_ADDR NODE2=NODE2_ADDR NODE3=NODE3_ADDR NODE4=NODE4_ADDR" in out
    entry = next(line for line in out.splitlines() if line.startswith("RAY_ADDRESS="))
    for override in ("trainer.nnodes=4", "trainer.n_gpus_per_node=8", "trainer.resume_mode=auto",
                     "actor_rollout_ref.model.path=/models/qwen", "npo.interventions="):  # fmt: skip
        assert override in entry
    assert not Path(with_sbatch["OUT_DIR"]).exists(), "a dry run creates nothing"


def test_an_interface_and_a_port_pin_the_network(with_sbatch):
    env = dict(with_sbatch, **GPU_ENV)
    args = ("--nodes", "2", "--iface", "ib0", "--ray-port", "24000", "--ray-auth", "disabled", "--dry-run")
    proc = launch(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "export NET_IFACE=ib0" in out and "export RAY_PORT=24000" in out and "RAY_AUTH_MODE=disabled" in out
    assert "# addresses: the IPv4 address of ib0 on each node; GLOO_SOCKET_IFNAME=NCCL_SOCKET_IFNAME=ib0" in out
    assert "GLOO_SOCKET_IFNAME=ib0" in out and "--address=NODE1_ADDR:24000" in out
    assert "RAY_AUTH_TOKEN_PATH" not in out


def test_the_demo_asks_for_a_share_of_a_node(with_sbatch):
    proc = launch("--demo", "--nodes", "2", "--gpus-per-node", "2", "--dry-run", env=with_sbatch)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "#SBATCH --cpus-per-task=1" in out and "#SBATCH --mem=4G" in out
    assert "#SBATCH --exclusive" not in out and "#SBATCH --gpus-per-node" not in out
    assert "--num-gpus=2" in out and "--num-cpus=8" in out  # two logical GPU slots, 4 CPUs each


@pytest.mark.parametrize("recipe", ["grpo", "luffy", "exgrpo", "rlep"])
def test_each_baseline_recipe_runs_its_own_config_locally_and_on_slurm(recipe, with_sbatch):
    local = launch("--local", "--recipe", recipe, "--dry-run", env=with_sbatch)
    assert local.returncode == 0, local.stderr
    assert f"--config-path {ROOT}/recipes/{recipe}/config --config-name {recipe}_cpu_demo" in local.stdout
    env = dict(with_sbatch, MODEL_PATH="/models/qwen", TRAIN_FILES="/data/train", VAL_FILES="/data/val")
    submit = launch("--recipe", recipe, "--dry-run", env=env)
    assert submit.returncode == 0, submit.stderr
    assert f"#SBATCH --job-name=npo-{recipe}" in submit.stdout
    assert f"--config-path {ROOT}/recipes/{recipe}/config --config-name {recipe}_trainer" in submit.stdout
