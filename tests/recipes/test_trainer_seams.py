"""RayNPOTrainer's seams without Ray: which steps inject, save, validate, and how look-ahead steps are logged.

verl's own trainer tests build trainers with ``__new__`` and fakes; these do the same.
"""

from types import SimpleNamespace

import numpy as np
import torch
from omegaconf import OmegaConf
from verl import DataProto

from npo_ext.compute import ComputeCounter
from npo_ext.config import GuidanceConfig, Intervention, NPOConfig
from npo_ext.experience_file import ExperienceHeader, append_prompts, start_file
from npo_ext.fork import ForkManager, ForkState, Phase
from npo_ext.guide_pool import GuidePool, GuideSample, PromptGuides
from recipes.npo.npo_ray_trainer import GuidedRollout, RayNPOTrainer, npo_summary
from recipes.rlep.plugin import ExperienceFileGuidance

EOS, PAD = 2, 0


class FakeRollout:
    """Two prompts x two responses, all wrong, like verl's agent loop output."""

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        n = len(prompts)
        out = DataProto.from_dict(
            tensors={
                "prompts": torch.full((n, 3), 7),
                "responses": torch.tensor([[9, EOS, PAD]] * n),
                "input_ids": torch.cat([torch.full((n, 3), 7), torch.tensor([[9, EOS, PAD]] * n)], 1),
                "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0]] * n),
                "response_mask": torch.tensor([[1, 1, 0]] * n),
                "position_ids": torch.arange(6).repeat(n, 1),
                "rm_scores": torch.zeros(n, 3),
            },
            non_tensors={"acc": np.zeros(n), "score": np.zeros(n)},
        )
        out.meta_info["reward_extra_keys"] = ["acc", "score"]
        return out


def make_trainer(tmp_path, phase=Phase.GUIDED):
    trainer = RayNPOTrainer.__new__(RayNPOTrainer)
    trainer.config = OmegaConf.create(
        {"actor_rollout_ref": {"rollout": {"n": 2}}, "trainer": {"default_local_dir": str(tmp_path), "save_freq": 1}}
    )
    trainer.npo = NPOConfig()
    trainer.guidance, trainer.plugin = GuidanceConfig(), None
    trainer.tokenizer = SimpleNamespace(eos_token_id=EOS, pad_token_id=PAD)
    trainer._eos_token_ids = (EOS,)
    trainer.auto = None
    trainer.fork_manager = ForkManager((Intervention(2, 2, 2),), tmp_path / "npo")
    trainer.fork_manager.state = ForkState(phase, Intervention(2, 2, 2) if phase != Phase.IDLE else None)
    trainer.fork_manager.pool.add("d/10", PromptGuides(8, 1, [GuideSample((5, 6, EOS), 1.0, 4)]))
    trainer.fork_manager.pool.add("d/11", PromptGuides(8, 0, []))  # the guide tried and failed
    trainer._reward_scorer = SimpleNamespace(score=lambda row, ids: {"score": 1.0, "acc": 1.0})
    trainer._pending_metrics = {}
    trainer.compute = ComputeCounter()
    trainer.global_steps = 3
    return trainer


def prompts(validate=False):
    batch = DataProto.from_dict(
        non_tensors={
            "uid": np.array(["a", "a", "b", "b"], dtype=object),
            "index": np.array([10, 10, 11, 11]),
            "data_source": np.array(["d"] * 4, dtype=object),
            "reward_model": np.array([{"ground_truth": "1"}] * 4, dtype=object),
            "extra_info": np.array([{}] * 4, dtype=object),
        }
    )
    batch.meta_info["validate"] = validate
    return batch


def test_guided_training_batches_get_guides_and_metrics(tmp_path):
    trainer = make_trainer(tmp_path)
    out = GuidedRollout(FakeRollout(), trainer).generate_sequences(prompts())
    assert out.batch["is_guide"].tolist() == [False, True, False, False]
    assert out.batch["responses"][1].tolist() == [5, 6, EOS]
    assert trainer._pending_metrics["npo/inject/replaced"] == 1.0
    assert trainer._pending_metrics["npo/inject/no_guide"] == 1.0
    # of 2 failed prompts the guide solved one with 1 of 8 samples: pass@4 = 1 - C(7,4)/C(8,4) = 0.5, and 0
    assert trainer._pending_metrics["npo/signal/q"] == 0.25 and trainer._pending_metrics["npo/signal/q_k"] == 4.0
    assert trainer._pending_metrics["npo/signal/q_prompts"] == 2.0
    assert trainer._pending_metrics["npo/onpolicy/acc_mean"] == 0.0, "taken before the guide row was written"
    assert trainer.compute.rollout_tokens == 4 * 2
    assert trainer._pending_metrics["npo/time/step_overhead_s"] > 0


def test_q_leaves_out_a_prompt_whose_guide_came_from_the_look_ahead(tmp_path):
    """A look-ahead response's counts are θ_{T+i}'s, not the guide's: Q is measured on the other failed prompt only."""
    trainer = make_trainer(tmp_path)
    trainer.fork_manager.pool = GuidePool()
    trainer.fork_manager.pool.add("d/10", PromptGuides(2, 2, [GuideSample((5, 6, EOS), 1.0, 3)], q_unbiased=False))
    trainer.fork_manager.pool.add("d/11", PromptGuides(8, 0, []))
    GuidedRollout(FakeRollout(), trainer).generate_sequences(prompts())
    assert trainer._pending_metrics["npo/inject/replaced"] == 1.0, "the look-ahead guide is still injected"
    assert trainer._pending_metrics["npo/signal/q"] == 0.0


def test_validation_and_non_guided_phases_are_untouched(tmp_path):
    trainer = make_trainer(tmp_path)
    out = GuidedRollout(FakeRollout(), trainer).generate_sequences(prompts(validate=True))
    assert "is_guide" not in out.batch.keys()
    for phase in (Phase.IDLE, Phase.LOOKAHEAD):
        trainer = make_trainer(tmp_path, phase)
        out = GuidedRollout(FakeRollout(), trainer).generate_sequences(prompts())
        assert "is_guide" not in out.batch.keys()
        logged = {key.split("/")[1] for key in trainer._pending_metrics if key != "npo/time/step_overhead_s"}
        assert logged == ({"onpolicy"} if phase == Phase.IDLE else set()), "look-ahead steps log under npo/lookahead"


def test_lookahead_steps_skip_checkpoints_and_validation(tmp_path):
    trainer = make_trainer(tmp_path, Phase.LOOKAHEAD)
    trainer._save_checkpoint()
    assert not list(tmp_path.glob("global_step_*")), "look-ahead weights are never checkpointed"
    assert trainer._validate() == {}
    trainer.global_steps = 2  # validation before the first look-ahead step (e.g. val_before_train on resume) runs
    assert trainer._in_lookahead_step() is False


def test_summary_line_names_phase_events_and_numbers():
    line = npo_summary(
        5,
        {"npo/phase": 4.0, "npo/event/rollback": 1.0, "npo/inject/replaced": 2.0, "critic/score/mean": 0.25},
    )
    assert line == "[npo] step=5 phase=guided rollback score=0.25 replaced=2"
    assert "phase=lookahead" in npo_summary(2, {"npo/lookahead/offset": 1.0})


def test_guides_may_end_with_any_id_generation_stops_on(tmp_path):
    """Like Qwen-VL's generation_config.json: <|im_end|> (the tokenizer's EOS) and <|endoftext|>."""
    from transformers import GenerationConfig

    GenerationConfig(eos_token_id=[EOS, 7, EOS], pad_token_id=PAD).save_pretrained(tmp_path)
    trainer = RayNPOTrainer.__new__(RayNPOTrainer)
    trainer.config = OmegaConf.create({"actor_rollout_ref": {"model": {"path": str(tmp_path)}}})
    trainer.tokenizer = SimpleNamespace(eos_token_id=EOS)
    assert trainer.eos_token_ids == (EOS, 7)


def rlep_trainer(tmp_path):
    """The trainer with RLEP's settings: groups of 2 = 1 generated + 1 appended replay from an experience file."""
    path = tmp_path / "experience.jsonl"
    if not start_file(path, ExperienceHeader(min_correct=1, samples_per_prompt=4, source_step=7)):
        append_prompts(path, {"d/10": (4, [[5, 6, EOS], [5, 7, EOS]])})
    trainer = make_trainer(tmp_path, phase=Phase.IDLE)
    trainer.config = OmegaConf.merge(
        trainer.config,
        {"actor_rollout_ref": {"rollout": {"agent": {"num_workers": 1}}}, "data": {"max_response_length": 3}},
    )
    trainer.npo = NPOConfig(enable=False)
    trainer.guidance = GuidanceConfig(source="experience_file", experience_file=str(path), mixing="append", gated=False)
    trainer.plugin = ExperienceFileGuidance(trainer)
    return trainer


def test_rlep_appends_a_replay_to_the_group_of_a_prompt_in_the_file(tmp_path):
    trainer = rlep_trainer(tmp_path)
    out = GuidedRollout(FakeRollout(), trainer).generate_sequences(prompts())
    assert out.batch["is_guide"].tolist() == [False, True, False, False], "d/10: 1 generated + 1 replay"
    assert out.batch["responses"][1].tolist()[:2] in ([5, 6], [5, 7])
    assert out.non_tensor_batch["uid"].tolist() == ["a", "a", "b", "b"]
    assert trainer.compute.rollout_tokens == 3 * 2, "three generated rows of two tokens; the replay is not generated"
    assert trainer._pending_metrics["npo/inject/guide_rows"] == 1
    assert trainer._pending_metrics["npo/signal/q"] == 0.5, "both groups fail; the file solves one of them"
    assert trainer.compute.external_tokens == int(out.batch["response_mask"][1].sum()) > 0, "the replay's tokens"


def test_the_sources_draw_state_is_saved_with_a_checkpoint_and_restored(tmp_path):
    trainer = rlep_trainer(tmp_path)
    folder = tmp_path / "global_step_3"
    folder.mkdir()
    trainer.write_checkpoint_state(folder)
    expected = [trainer.plugin.source().guides("d/10") for _ in range(6)]
    resumed = rlep_trainer(tmp_path)
    resumed.load_source_state(folder)
    assert [resumed.plugin.source().guides("d/10") for _ in range(6)] == expected
