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


def test_a_dry_run_prints_the_batch_script_and_a_multi_node_plan(with_sbatch):
    env = dict(with_sbatch, MODEL_PATH="/models/qwen", TRAIN_FILES="/data/train", VAL_FILES="/data/val")
    proc = launch("--nodes", "4", "--dry-run", "npo.interventions=[]", env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mode=submit" in out
    for line in ("#SBATCH --nodes=4 --ntasks-per-node=1", "#SBATCH --gpus-per-node=8", "--requeue", "--signal=B:USR1@"):
        assert line in out
    assert re.search(r"^exec bash scripts/run_npo.sh --nodes 4 npo.interventions=\\\[\\\]$", out, re.M)  # no --dry-run
    ray_starts = [line for line in out.splitlines() if " start --block " in line]
    assert len(ray_starts) == 4
    assert "--head" in ray_starts[0] and all("--address=HEAD_IP:6379" in line for line in ray_starts[1:])
    assert "--nodes NODE1 NODE2 NODE3 NODE4 --gpus-per-node 8" in out
    entry = next(line for line in out.splitlines() if line.startswith("RAY_ADDRESS="))
    for override in ("trainer.nnodes=4", "trainer.n_gpus_per_node=8", "trainer.resume_mode=auto",
                     "actor_rollout_ref.model.path=/models/qwen", "npo.interventions="):  # fmt: skip
        assert override in entry


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
