"""The RLEP recipe on the tiny CPU demo, through the real actor and rollout: the collection command writes the
experience file from the demo model, training appends two stored successes to the groups of prompts in it (groups
of 4 generated + 2 replayed), and the draw state is saved with each checkpoint."""

import json

import pytest

from npo_ext.experience_file import read_experience

pytestmark = pytest.mark.slow

STEPS, PROMPTS, GROUP = 4, 4, 6


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_recipe):
    out = tmp_path_factory.mktemp("rlep")
    # one verified success is enough to be kept here (the recipe's default is RLEP's 2): the near-random demo model
    # then leaves enough prompts in the file that the 16 prompts of 4 steps meet some of them
    records, output = demo_recipe(out, "rlep", STEPS, "trainer.save_freq=1", "rlep_collect.min_correct=1")
    return out, records, output


def test_the_collection_keeps_prompts_with_verified_successes_and_reports_the_rest(run):
    out, _, output = run
    header, entries = read_experience(out / "experience.jsonl")
    assert (header.samples_per_prompt, header.min_correct) == (8, 1)
    assert entries and all(len(responses) >= 1 for responses in entries.values())
    assert f"{len(entries)} prompts kept this run; {64 - len(entries)} skipped" in output


def test_groups_are_g_generated_plus_the_appended_replays(run):
    _, records, _ = run
    assert len(records) == STEPS
    assert sum(step["npo/inject/guide_rows"] for step in records) > 0, "no prompt of the file came up"
    for step in records:
        assert step["npo/inject/groups"] == PROMPTS
        assert step["npo/inject/replaced"] <= step["npo/inject/guide_rows"] <= 2 * step["npo/inject/replaced"]
        if step["npo/inject/guide_rows"]:
            # the batch is 4 groups of 6 rows: replays are appended to (not generated in) the group
            assert step["npo/guide/fraction_of_batch"] == pytest.approx(step["npo/inject/guide_rows"] / (4 * GROUP))
            # the replays are verified-correct responses: never below their group's mean
            assert step["npo/guide/advantage_mean"] >= 0


def test_q_of_the_experience_file_is_logged(run):
    _, records, _ = run
    qs = [step["npo/signal/q"] for step in records if "npo/signal/q" in step]
    assert qs and all(0.0 <= q <= 1.0 for q in qs), "the demo model fails most groups: Q has a denominator"


def test_the_draw_state_is_saved_with_every_checkpoint(run):
    out, _, _ = run
    folders = sorted((out / "checkpoints").glob("global_step_*"))
    assert folders, "trainer.save_freq=1 keeps the demo's last checkpoints"
    for folder in folders:
        state = json.loads((folder / "guidance_source.json").read_text())
        assert state["rng"]["bit_generator"] == "PCG64"
