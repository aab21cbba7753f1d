"""The fork engine reaches the trainer only through ``ForkHost``: no other member, no private one, no write to the
step counter; and the trainer provides every member of it."""

import ast
import inspect
from pathlib import Path

import pytest
from verl.trainer.ppo import ray_trainer

from recipes.npo.fork_host import ForkHost
from recipes.npo.npo_ray_trainer import RayNPOTrainer

ROOT = Path(__file__).resolve().parents[2]
ENGINE_MODULES = ("recipes/npo/fork_engine.py", "recipes/npo/topk_forward.py")
DATA_MEMBERS = set(ForkHost.__annotations__)
CALLABLE_MEMBERS = (
    {name for name, value in vars(ForkHost).items() if callable(value) or isinstance(value, property)}
    - set(vars(object))
    - {"_is_protocol", "_is_runtime_protocol"}
)


def host_uses(path: Path) -> list[tuple[str, ast.AST]]:
    """Every ``trainer.X`` and ``self.trainer.X`` in a module, with the node that uses it."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        host = node.value
        named_trainer = isinstance(host, ast.Name) and host.id == "trainer"
        self_trainer = isinstance(host, ast.Attribute) and host.attr == "trainer" and isinstance(host.value, ast.Name)
        if named_trainer or self_trainer:
            uses.append((node.attr, node))
    return uses


def test_the_protocol_lists_data_and_methods():
    assert {"npo", "config", "actor_rollout_wg"} <= DATA_MEMBERS
    assert {"global_steps", "resume_at", "save_kept_checkpoint", "gen_batch_of"} <= CALLABLE_MEMBERS


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_the_engine_uses_only_the_protocols_public_members(module):
    uses = host_uses(ROOT / module)
    assert uses, f"{module} should act on its host"
    unknown = sorted({name for name, _ in uses} - DATA_MEMBERS - CALLABLE_MEMBERS)
    assert not unknown, f"{module} uses trainer members outside ForkHost: {unknown}"
    assert not [name for name, _ in uses if name.startswith("_")]


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_the_engine_never_writes_to_its_host(module):
    written = [
        node.attr
        for name, node in host_uses(ROOT / module)
        if isinstance(node.ctx, ast.Store | ast.Del)  # trainer.x = ..., trainer.x += ..., del trainer.x
    ]
    assert written == [], f"{module} writes {written} on the trainer; go through a ForkHost method"


def test_the_trainer_provides_every_member():
    for name in CALLABLE_MEMBERS:
        assert hasattr(RayNPOTrainer, name) or name == "global_steps", name
    sources = inspect.getsource(inspect.getmodule(RayNPOTrainer)) + inspect.getsource(ray_trainer)
    for name in DATA_MEMBERS | {"global_steps"}:
        assert f"self.{name} =" in sources or f"self.{name}: " in sources, f"no trainer assigns {name}"
