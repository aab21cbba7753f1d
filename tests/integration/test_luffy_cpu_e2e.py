"""The LUFFY recipe on the tiny CPU demo, through the real actor and rollout: every group gets the prompt's teacher
trace, the registered ``npo_guided`` loss shapes those tokens, and advantages are not std-normalised."""

import pytest

pytestmark = pytest.mark.slow

STEPS = 2


@pytest.fixture(scope="module")
def records(tmp_path_factory, demo_recipe):
    records, _ = demo_recipe(tmp_path_factory.mktemp("luffy"), "luffy", STEPS, "trainer.save_freq=-1")
    return records


def test_every_group_gets_one_teacher_trace(records):
    assert len(records) == STEPS
    for step in records:
        assert step["npo/inject/groups"] > 0
        assert step["npo/inject/guide_rows"] == step["npo/inject/groups"]  # ungated: solved groups too


def test_the_registered_loss_shapes_the_teacher_tokens(records):
    for step in records:
        assert 0 < step["actor/npo_guide_token_frac"] < 1  # teacher tokens among on-policy ones
        assert 0 < step["actor/npo_shaped_weight_mean"] < 1  # f(p) = p / (p + 0.1) on them


def test_advantages_are_mean_centred_without_std_normalisation(records):
    # rewards lie in [0, 1]; with the group std in the denominator a group with one correct response of four would
    # give that response (1 - 0.25) / 0.5 = 1.5
    for step in records:
        assert step["critic/advantages/max"] <= 1.0 and step["critic/advantages/min"] >= -1.0
