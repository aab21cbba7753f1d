"""ExGRPO's glue without Ray: experience questions swapped into the batch, the lowest-entropy stored response
replayed into its group with its recorded log-probs, the step's successes stored, and V/Q/S logged."""

from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset, SequentialSampler
from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.utils.dataset.rl_dataset import collate_fn

from npo_ext.compute import ComputeCounter
from npo_ext.config import GuidanceConfig, NPOConfig, NPOConfigError
from npo_ext.fork import ForkManager
from npo_ext.guide_pool import GuideSample
from npo_ext.injection import BEHAVIOUR_LOG_PROBS, IS_GUIDE
from recipes.common.positioned_dataset import POSITION, PositionedDataset
from recipes.exgrpo.replay import ExperienceReplay, merge_collated
from recipes.npo.npo_ray_trainer import RayNPOTrainer

EOS, PAD, N, PROMPT_WIDTH, WIDTH = 2, 0, 4, 2, 4


class Rows(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"data_source": "d", "index": i, "reward_model": {}, "extra_info": {}, "dummy_tensor": torch.tensor([i])}


def make_trainer(tmp_path):
    trainer = RayNPOTrainer.__new__(RayNPOTrainer)
    trainer.config = OmegaConf.create(
        {"actor_rollout_ref": {"rollout": {"n": N, "log_prob_micro_batch_size_per_gpu": 4}}}
    )
    trainer.npo = NPOConfig(enable=False)
    trainer.guidance = GuidanceConfig(
        source="replay", loss_shaping="behaviour_ratio", gated=False, replay_start_accuracy=0.0
    )
    trainer.tokenizer = SimpleNamespace(eos_token_id=EOS, pad_token_id=PAD)
    trainer._eos_token_ids = (EOS,)
    trainer.train_dataset = PositionedDataset(Rows())
    sampler = ExperienceReplay.wrap_sampler(SequentialSampler(range(8)), trainer.guidance)
    trainer.train_dataloader = SimpleNamespace(collate_fn=collate_fn, sampler=sampler)
    trainer.actor_rollout_wg = SimpleNamespace(world_size=1)
    trainer.fork_manager = ForkManager((), tmp_path / "npo")
    trainer._reward_scorer = SimpleNamespace(score=lambda row, ids: {"score": 1.0, "acc": 1.0})
    trainer._pending_metrics = {}
    trainer.compute = ComputeCounter()
    trainer.global_steps = 1
    trainer.plugin = ExperienceReplay(trainer)
    return trainer


def generate(trainer, batch_dict, responses):
    """The step batch after generation, as ``_compute_old_log_prob`` gets it: ``responses[index]`` lists the group's
    (token ids, correct) pairs."""
    prompts = DataProto.from_single_dict(batch_dict).repeat(N, interleave=True)
    rows = [r for index in batch_dict["index"] for r in responses[int(index)]]
    ids = torch.tensor([list(r) + [PAD] * (WIDTH - len(r)) for r, _ in rows])
    mask = (torch.arange(WIDTH) < torch.tensor([len(r) for r, _ in rows]).unsqueeze(-1)).long()
    acc = np.array([float(ok) for _, ok in rows])
    scores = torch.zeros(len(rows), WIDTH)
    scores[torch.arange(len(rows)), mask.sum(-1) - 1] = torch.tensor(acc, dtype=torch.float32)
    output = DataProto.from_dict(
        tensors={
            "prompts": torch.full((len(rows), PROMPT_WIDTH), 7),
            "responses": ids,
            "input_ids": torch.cat([torch.full((len(rows), PROMPT_WIDTH), 7), ids], 1),
            "attention_mask": torch.cat([torch.ones(len(rows), PROMPT_WIDTH, dtype=torch.long), mask], 1),
            "response_mask": mask,
            "position_ids": torch.arange(PROMPT_WIDTH + WIDTH).repeat(len(rows), 1),
            "rm_scores": scores,
        },
        non_tensors={"acc": acc, "score": acc.copy()},
    )
    output.meta_info["reward_extra_keys"] = ["acc", "score"]
    trainer.plugin.after_generation(prompts, output)
    # verl's step batch: the generated rows with the prompts' reward fields and a uid per prompt
    output.non_tensor_batch["uid"] = np.repeat(np.array([f"u{i}" for i in batch_dict["index"]], dtype=object), N)
    for key in ("data_source", "reward_model", "extra_info"):
        output.non_tensor_batch[key] = prompts.non_tensor_batch[key]
    return output


def fake_actor(batches):
    """``_compute_old_log_prob``: entropy = token id / 10 on every position, log-prob −0.5; records batch sizes."""

    def compute(trainer, batch):
        batches.append(len(batch))
        responses = batch.batch["responses"].float()
        out = {"entropys": responses / 10, "old_log_probs": torch.full(responses.shape, -0.5)}
        return DataProto.from_dict(tensors=out), 0.0

    return compute


WRONG = ((9, EOS), False)


def test_positioned_rows_and_merged_batches():
    dataset = PositionedDataset(Rows())
    assert dataset[5][POSITION] == 5 and len(dataset) == 8
    fresh, experience = collate_fn([dataset[i] for i in range(4)]), collate_fn([dataset[6]])
    merged = merge_collated(fresh, 3, experience)
    assert merged["index"].tolist() == [0, 1, 2, 6] and merged["dummy_tensor"].flatten().tolist() == [0, 1, 2, 6]
    with pytest.raises(NPOConfigError, match="collate to fields"):
        merge_collated(fresh, 3, {"index": np.array([6])})


def test_experience_is_stored_drawn_into_the_batch_and_replayed_by_lowest_entropy(tmp_path):
    trainer = make_trainer(tmp_path)
    replay = trainer.plugin
    first = collate_fn([trainer.train_dataset[i] for i in range(4)])
    assert replay.compose(first) is first, "replay has not started: the batch is the dataloader's"

    # step 1: prompt 1 is solved three times of four (two stored successes: the third is cut off at the length limit,
    # without EOS), prompt 2 four of four (retired)
    responses = {i: [WRONG] * N for i in range(8)}
    responses[1] = [((5, 6, EOS), True), ((3, EOS), True), ((8, 8, 8, 8), True), WRONG]
    responses[2] = [((4, EOS), True)] * N
    with mock.patch.object(RayPPOTrainer, "_compute_old_log_prob", fake_actor([])):
        trainer._compute_old_log_prob(generate(trainer, first, responses))
    assert set(replay.pool.questions) == {"d/1"} and replay.pool.retired == {"d/2": 2} and replay.pool.started
    stored = replay.pool.candidates("d/1")
    assert [s.response_ids for s in stored] == [(5, 6, EOS), (3, EOS)]
    assert stored[0].behaviour_log_probs == (-0.5, -0.5, -0.5), "the actor's log-probs of the stored tokens"
    assert replay.pool.questions["d/1"].successes == 3
    assert trainer._pending_metrics["npo/replay/pool_questions"] == 1
    assert trainer._pending_metrics["npo/replay/unfinished_successes"] == 1

    # step 2: half the batch (2 prompts) may be experience questions; the pool holds one, so one prompt is swapped
    second = replay.compose(collate_fn([trainer.train_dataset[i] for i in range(4, 8)]))
    assert second["index"].tolist() == [4, 5, 6, 1] and second[POSITION].tolist() == [4, 5, 6, 1]
    assert trainer._pending_metrics["npo/replay/questions"] == 1
    batches = []
    trainer._pending_metrics = {}
    with mock.patch.object(RayPPOTrainer, "_compute_old_log_prob", fake_actor(batches)):
        batch = generate(trainer, second, responses | {1: [WRONG] * N})
        trainer._compute_old_log_prob(batch)
    assert batches == [4, 16], "2 candidates padded to a whole micro-batch, then the step's 16 rows"
    group = [i for i, key in enumerate(batch.non_tensor_batch["npo_prompt_key"]) if key == "d/1"]
    guide = [i for i in group if batch.batch[IS_GUIDE][i]]
    assert len(guide) == 1, "one slot of the experience question's group"
    assert batch.batch["responses"][guide[0]].tolist()[:2] == [3, EOS], "(3, EOS) has the lower entropy"
    assert batch.batch[BEHAVIOUR_LOG_PROBS][guide[0]].tolist()[:3] == [-0.5, -0.5, 0.0]
    assert not batch.batch[IS_GUIDE][[i for i in range(16) if i not in group]].any(), "fresh prompts get nothing"
    metrics = trainer._pending_metrics
    assert metrics["npo/inject/guide_rows"] == 1
    assert metrics["npo/signal/q"] == pytest.approx(1 / 4), "four groups fail; the replay solves one"
    assert metrics["npo/signal/v"] == pytest.approx(1.0), "π_cur = π_past on the replayed tokens: w = 1"
    assert metrics["npo/signal/s"] == pytest.approx(0.25)
    # the replayed group: its 3 generated responses failed, the replayed one is correct. ExGRPO's release counts the
    # whole group, so the question moves to bucket 1 (counting the generated rows alone would keep it in bucket 3)
    assert replay.pool.questions["d/1"].successes == 1


@pytest.mark.parametrize("collect_before_start", [False, True])
def test_successes_are_stored_from_the_step_that_starts_replay(tmp_path, collect_before_start):
    trainer = make_trainer(tmp_path)
    trainer.guidance = GuidanceConfig(
        source="replay", gated=False, replay_start_accuracy=0.35, replay_collect_before_start=collect_before_start
    )
    replay = trainer.plugin = ExperienceReplay(trainer)
    responses = {i: [WRONG] * N for i in range(8)}
    responses[1] = [((3, EOS), True)] + [WRONG] * (N - 1)
    responses[2] = [((4, EOS), True)] * N
    with mock.patch.object(RayPPOTrainer, "_compute_old_log_prob", fake_actor([])):
        # step 1: 5 of 16 responses correct (0.31): replay does not start
        trainer._compute_old_log_prob(
            generate(trainer, collate_fn([trainer.train_dataset[i] for i in range(4)]), responses)
        )
        assert not replay.pool.started and replay.pool.retired == {"d/2": 2}, "a question solved n/n is retired anyway"
        assert set(replay.pool.questions) == ({"d/1"} if collect_before_start else set())
        # step 2: 6 of 16 correct (0.375) starts replay, and this step's successes are stored
        responses[5] = [((6, EOS), True)] * (N - 1) + [WRONG]
        responses[6] = [((7, EOS), True)] * (N - 1) + [WRONG]
        trainer._compute_old_log_prob(
            generate(trainer, collate_fn([trainer.train_dataset[i] for i in range(4, 8)]), responses)
        )
    assert replay.pool.started
    assert set(replay.pool.questions) == {"d/5", "d/6"} | ({"d/1"} if collect_before_start else set())


def test_a_pool_that_no_longer_matches_the_data_is_an_error(tmp_path):
    trainer = make_trainer(tmp_path)
    stored = GuideSample((5, EOS), 1.0, 1, "replay", (-0.1, -0.1))
    trainer.plugin.pool.observe("d/7", 3, [stored], 1, N)  # stored for position 7, found at position 3
    trainer.plugin.pool.update_start(1.0)
    with pytest.raises(NPOConfigError, match="same data files"):
        trainer.plugin.compose(collate_fn([trainer.train_dataset[i] for i in range(4)]))


def test_the_next_epoch_leaves_out_a_question_solved_n_of_n(tmp_path):
    trainer = make_trainer(tmp_path)
    responses = {i: [WRONG] * N for i in range(8)}
    responses[2] = [((4, EOS), True)] * N
    with mock.patch.object(RayPPOTrainer, "_compute_old_log_prob", fake_actor([])):
        trainer._compute_old_log_prob(
            generate(trainer, collate_fn([trainer.train_dataset[i] for i in range(4)]), responses)
        )
    next_epoch = list(trainer.train_dataloader.sampler)
    assert 2 not in next_epoch and len(next_epoch) == 8, "ExGRPO's release drops it from the data"


def test_keeping_retired_questions_is_an_option_and_dropping_them_needs_the_wrapped_sampler(tmp_path):
    guidance = GuidanceConfig(source="replay", replay_drop_retired=False)
    sampler = SequentialSampler(range(8))
    assert ExperienceReplay.wrap_sampler(sampler, guidance) is sampler
    trainer = make_trainer(tmp_path)
    trainer.train_dataloader.sampler = sampler
    with pytest.raises(NPOConfigError, match="wrap_sampler"):
        ExperienceReplay(trainer)
