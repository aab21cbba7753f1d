"""Shared by the end-to-end runs: the tiny model and data, fresh run folders, the probe, checkpoint comparisons."""

import fcntl
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from recipes.demo.shapes_dataset import write_shapes_parquet
from recipes.demo.tiny_model import build_tiny_qwen3_vl


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    build_tiny_qwen3_vl(root / "model")
    write_shapes_parquet(root / "data", train_size=64, val_size=8)
    return root


@pytest.fixture(scope="session")
def new_demo_dir(assets):
    """``new_demo_dir(parent)``: a run folder under ``parent`` that links the shared model and data."""

    def make(parent: Path) -> Path:
        demo = parent / "demo"
        demo.mkdir()
        (demo / "model").symlink_to(assets / "model")
        (demo / "data").symlink_to(assets / "data")
        return demo

    return make


PROBE = Path(__file__).with_name("npo_cpu_probe.py")
VLLM_LOCK = Path(tempfile.gettempdir()) / "npo-tests-one-vllm-run.lock"


@contextmanager
def one_vllm_run_at_a_time(python: str) -> Iterator[None]:
    """Runs through vLLM (``python`` is not this interpreter) take a machine-wide lock: two of them side by side,
    one per test worker, run a 24 GiB machine out of memory; other runs go on beside them."""
    if python == sys.executable:
        yield
        return
    with open(VLLM_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_probe(python: str, demo_dir: Path, name: str, args: list[str], timeout: int) -> tuple[int, dict, str]:
    """Run tests/integration/npo_cpu_probe.py; returns its exit code, its JSON report and its output."""
    report = demo_dir / f"{name}.json"
    with one_vllm_run_at_a_time(python):
        proc = subprocess.run(
            [python, str(PROBE), str(demo_dir), str(report), *args], capture_output=True, text=True, timeout=timeout
        )
    data = json.loads(report.read_text()) if report.exists() else {}
    return proc.returncode, data, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def probe():
    """``probe(python, demo_dir, name, args, timeout) -> (exit code, report, output)``."""
    return run_probe


def _local(value):
    """An FSDP checkpoint stores DTensors: each rank's file holds its local shard."""
    return value.to_local() if hasattr(value, "to_local") else torch.as_tensor(value)


def load_actor_state(actor_dir: Path) -> dict:
    """Weights, optimizer, LR scheduler and RNG of an FSDP actor checkpoint of any world size. Weights and optimizer
    state are keyed ``(rank, name)`` (each rank's shard); ``rng`` is rank 0's and ``rngs`` every rank's."""
    files = sorted(actor_dir.glob("model_world_size_*_rank_*.pt"))
    assert files, f"no actor checkpoint in {actor_dir}"
    world = int(files[0].name.split("_")[3])
    state: dict = {"model": {}, "optim": {"state": {}}, "rngs": []}
    for rank in range(world):
        part = {
            name: torch.load(actor_dir / f"{name}_world_size_{world}_rank_{rank}.pt", weights_only=False)
            for name in ("model", "optim", "extra_state")
        }
        state["model"].update({(rank, k): _local(v) for k, v in part["model"].items()})
        state["optim"]["state"].update(
            {(rank, k): {name: _local(v) for name, v in values.items()} for k, values in part["optim"]["state"].items()}
        )
        state["rngs"].append(part["extra_state"]["rng"])
        if rank == 0:
            state.update(lr_scheduler=part["extra_state"]["lr_scheduler"], rng=part["extra_state"]["rng"])
    return state


def assert_same_state(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), "weights"
    for key, value in a["optim"]["state"].items():
        for name, tensor in value.items():
            other = b["optim"]["state"][key][name]
            assert torch.equal(tensor, other), f"optimizer {key}.{name}"
    assert a["lr_scheduler"] == b["lr_scheduler"]
    assert len(a["rngs"]) == len(b["rngs"]), "world size"
    assert all(torch.equal(x["cpu"], y["cpu"]) for x, y in zip(a["rngs"], b["rngs"], strict=True)), "every rank's RNG"


@pytest.fixture(scope="session")
def actor_state():
    """``actor_state.load(dir)``, ``actor_state.assert_same(a, b)`` and ``actor_state.local(tensor)``."""
    return SimpleNamespace(load=load_actor_state, assert_same=assert_same_state, local=_local)


ROOT = Path(__file__).resolve().parents[2]


def run_demo_recipe(
    out: Path, recipe: str, steps: int, *overrides: str, ranks: int = 2, python: str = sys.executable
) -> tuple[list[dict], str]:
    """``bash scripts/run_npo.sh --local --recipe RECIPE --gpus-per-node RANKS`` on the CPU demo in ``out``, through
    the vLLM rollout when ``python`` is the .venv-vllm interpreter; returns the step records (the file logger's) and
    the output. Fails the test, with the output's tail, when the run fails."""
    log = out / "steps.jsonl"
    env = dict(os.environ, OUT_DIR=str(out), PYTHON=python, VERL_FILE_LOGGER_PATH=str(log))
    rollout = ["--rollout", "vllm"] if python != sys.executable else []
    with one_vllm_run_at_a_time(python):
        proc = subprocess.run(
            ["bash", "scripts/run_npo.sh", "--local", "--recipe", recipe, "--gpus-per-node", str(ranks), *rollout,
             f"trainer.total_training_steps={steps}", "trainer.logger=[console,file]", *overrides],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line)["data"] for line in log.read_text().splitlines()], proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def demo_recipe():
    """``demo_recipe(out, recipe, steps, *overrides, ranks=2, python=...) -> (records, output)``: see
    :func:`run_demo_recipe`."""
    return run_demo_recipe


@pytest.fixture(scope="session")
def vllm_lock():
    """``with vllm_lock(python):`` around a run through vLLM (see :func:`one_vllm_run_at_a_time`)."""
    return one_vllm_run_at_a_time
