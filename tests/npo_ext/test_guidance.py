"""Guidance sources behind one interface: the teacher source, ungated mixing, provenance in pool files."""

import math

import numpy as np

from npo_ext.guidance import TeacherSource
from npo_ext.guide_pool import GuidePool, GuideSample, PromptGuides
from npo_ext.injection import IS_GUIDE, InjectionSpec, inject_guidance

EOS, PAD = 2, 0


def rollout(build, accs_per_group, teacher_texts):
    """A rollout batch whose prompts carry a teacher trace in ``extra_info`` (None: no trace)."""
    rows = [(g, a) for g, accs in enumerate(accs_per_group) for a in accs]
    extra = np.empty(len(rows), dtype=object)
    for i, (g, _) in enumerate(rows):
        extra[i] = {"index": g, "teacher_response": teacher_texts[g]}
    batch = build([g for g, _ in rows], [float(a) for _, a in rows], non_tensors={"extra_info": extra})
    return batch, [f"p{g}" for g, _ in rows]


def tokenize(text):
    return [100 + ord(c) - ord("a") for c in text]


def test_teacher_source_tokenises_the_stored_trace_and_skips_rows_without_one():
    source = TeacherSource(tokenize)
    (guide,) = source.guides("p0", {"extra_info": {"teacher_response": "abc"}})
    assert guide.response_ids == (100, 101, 102) and guide.provenance == "teacher"
    assert guide.behaviour_log_probs is None and math.isnan(guide.score)  # unverified; LUFFY takes π_teacher = 1
    assert source.guides("p1", {"extra_info": {"teacher_response": "  "}}) == []
    assert source.guides("p2", {"extra_info": None}) == []


def test_ungated_mixing_puts_a_teacher_trace_in_every_group_even_solved_ones(rollout_batch):
    batch, keys = rollout(rollout_batch, [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]], ["ab", "ba", None])
    spec = InjectionSpec(gated=False, slots_per_group=1)
    metrics = inject_guidance(
        batch, TeacherSource(tokenize), keys, spec, eos_token_ids=[EOS], pad_token_id=PAD,
        reward_fn=lambda row, ids: {"score": 1.0, "acc": 1.0},
    )  # fmt: skip
    assert batch.batch[IS_GUIDE].tolist() == [False, False, False, True, False, False, False, True] + [False] * 4
    assert batch.batch["responses"][3, :3].tolist() == [100, 101, EOS]  # EOS appended to the trace
    assert metrics["npo/inject/below_gate"] == 3 and metrics["npo/inject/no_guide"] == 1


def test_gated_mixing_leaves_groups_at_or_above_the_gate_alone(rollout_batch):
    batch, keys = rollout(rollout_batch, [[1, 1, 1, 0], [0, 0, 0, 0]], ["ab", "ba"])
    inject_guidance(
        batch, TeacherSource(tokenize), keys, InjectionSpec(gate=0.6), eos_token_ids=[EOS], pad_token_id=PAD,
        reward_fn=lambda row, ids: {"score": 1.0, "acc": 1.0},
    )  # fmt: skip
    assert batch.batch[IS_GUIDE].tolist() == [False] * 7 + [True]


def test_provenance_and_behaviour_log_probs_survive_the_pool_files_and_old_files_still_load(tmp_path):
    sample = GuideSample((5, EOS), 1.0, 3, provenance="replay", behaviour_log_probs=(-0.5, -0.25))
    GuidePool.write_batch(tmp_path, 0, {"a": PromptGuides(8, 1, [sample])})
    assert GuidePool.load(tmp_path, 1).guides("a") == [sample]
    old_sample = '{"response_ids": [7, 2], "score": 1.0, "source_step": 4}'
    old = '{"b": {"num_samples": 8, "num_correct": 1, "samples": [' + old_sample + "]}}"
    GuidePool.batch_path(tmp_path, 1).write_text(old)
    (loaded,) = GuidePool.load(tmp_path, 2).guides("b")
    assert loaded == GuideSample((7, EOS), 1.0, 4) and loaded.provenance == "near_future"
