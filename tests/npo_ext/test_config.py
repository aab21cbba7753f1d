"""NPO option parsing: defaults, unknown keys, bad schedules."""

import pytest

from npo_ext.config import GuidanceConfig, Intervention, NPOConfig, NPOConfigError


def test_defaults_follow_the_paper():
    cfg = NPOConfig.from_dict({})
    assert cfg.gate == 0.6 and cfg.slot == "last" and cfg.slots_per_group == 1 and cfg.interventions == ()


def test_window_defaults_to_delta():
    cfg = NPOConfig.from_dict({"interventions": [{"at_step": 0, "delta": 3}, {"at_step": 5, "delta": 2, "window": 4}]})
    assert cfg.interventions == (Intervention(0, 3, 3), Intervention(5, 2, 4))


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"gat": 0.5}, r"unknown npo option\(s\): npo.gat"),
        ({"interventions": [{"at_step": 0, "delta": 0}]}, r"interventions\[0\].delta must be > 0"),
        ({"interventions": [{"at_step": 0, "delta": -2}]}, r"delta must be > 0"),
        ({"interventions": [{"at_step": -1, "delta": 2}]}, r"at_step must be >= 0"),
        ({"interventions": [{"at_step": 0, "delta": 2, "window": 0}]}, r"window must be > 0"),
        ({"interventions": [{"at_step": 0}]}, r"missing \['delta'\]"),
        ({"interventions": [{"at_step": 0, "delta": 1, "dleta": 2}]}, r"unknown key\(s\) \['dleta'\]"),
        ({"interventions": [5]}, r"must be a mapping"),
        (
            {"interventions": [{"at_step": 0, "delta": 4}, {"at_step": 3, "delta": 2}]},
            r"overlap: at_step=3 starts before the window of at_step=0 ends \(step 4\)",
        ),
        ({"interventions": [{"at_step": 5, "delta": 1}, {"at_step": 0, "delta": 1}]}, r"sorted by at_step"),
        ({"gate": 0.0}, r"npo.gate must be in \(0, 1\]"),
        ({"slot": "middle"}, r"npo.slot must be one of"),
        ({"guide_n": 0}, r"npo.guide_n must be >= 1"),
    ],
)
def test_bad_options_are_named(raw, message):
    with pytest.raises(NPOConfigError, match=message):
        NPOConfig.from_dict(raw)


def test_adjacent_interventions_are_allowed():
    cfg = NPOConfig.from_dict({"interventions": [{"at_step": 0, "delta": 2}, {"at_step": 2, "delta": 1}]})
    assert len(cfg.interventions) == 2


def test_run_shape_checks():
    cfg = NPOConfig.from_dict({"interventions": [{"at_step": 2, "delta": 3, "window": 2}]})
    cfg.check_against_run(rollout_n=4, total_steps=6, steps_per_epoch=10)
    with pytest.raises(NPOConfigError, match="look-ahead must end before the last step"):
        cfg.check_against_run(rollout_n=4, total_steps=5, steps_per_epoch=10)
    with pytest.raises(NPOConfigError, match="crosses an epoch boundary"):
        cfg.check_against_run(rollout_n=4, total_steps=20, steps_per_epoch=4)
    with pytest.raises(NPOConfigError, match="slots_per_group=1 must be smaller than rollout.n=1"):
        cfg.check_against_run(rollout_n=1, total_steps=20, steps_per_epoch=10)
    late = NPOConfig.from_dict({"interventions": [{"at_step": 2, "delta": 1, "window": 5}]})
    with pytest.raises(NPOConfigError, match="guided window ends at step 7, after the last step 6"):
        late.check_against_run(rollout_n=4, total_steps=6, steps_per_epoch=10)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"mixing": "append"}, "cannot gate"),
        ({"mixing": "prepend"}, "guidance.mixing must be one of"),
        ({"source": "experience_file"}, "needs guidance.experience_file"),
        ({"source": "memory"}, "guidance.source must be one of"),
        ({"loss_shaping": "behaviour_ratio"}, "only guidance.source=replay records"),
        ({"source": "replay", "mixing": "append", "gated": False}, "mixing=replace"),
        ({"source": "replay", "replay_ratio": 1.0}, "replay_ratio must be in"),
        ({"source": "replay", "replay_max_responses": 0}, "replay_max_responses >= 1"),
        ({"pool": "x"}, "unknown guidance option"),
    ],
)
def test_bad_guidance_settings_name_the_option(raw, message):
    with pytest.raises(NPOConfigError, match=message):
        GuidanceConfig.from_dict(raw)


def test_rleps_guidance_settings_are_accepted():
    raw = {"source": "experience_file", "experience_file": "e.jsonl", "mixing": "append", "gated": False}
    assert GuidanceConfig.from_dict(raw).mixing == "append"
