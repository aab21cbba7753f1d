"""The trainer finds a recipe's plug-in by its source or by name; a fifth method needs no edit to the trainer."""

import pytest

from npo_ext.config import GuidanceConfig, NPOConfigError
from recipes.common.guidance_plugin import PLUGINS, GuidancePlugin, plugin_class
from recipes.exgrpo.replay import ExperienceReplay
from recipes.luffy.plugin import TeacherGuidance
from recipes.rlep.plugin import ExperienceFileGuidance


class FifthMethod(GuidancePlugin):
    """A new recipe's plug-in, with a source name the project has never heard of."""


def test_each_baseline_source_finds_its_recipes_plug_in_and_npo_needs_none():
    assert plugin_class(GuidanceConfig()) is None
    assert plugin_class(GuidanceConfig(source="teacher")) is TeacherGuidance
    assert plugin_class(GuidanceConfig(source="experience_file", experience_file="e.jsonl")) is ExperienceFileGuidance
    assert plugin_class(GuidanceConfig(source="replay")) is ExperienceReplay
    assert set(PLUGINS) == {"teacher", "experience_file", "replay"}


def test_a_new_source_brings_its_plug_in_by_name():
    guidance = GuidanceConfig(source="fifth", plugin=f"{__name__}:FifthMethod")
    assert plugin_class(guidance) is FifthMethod
    with pytest.raises(NPOConfigError, match="or come with guidance.plugin"):
        GuidanceConfig(source="fifth")


@pytest.mark.parametrize(
    ("plugin", "message"),
    [("recipes.nowhere:Thing", "could not be loaded"), (f"{__name__}:pytest", "is not a"), ("builtins:dict", "is not")],
)
def test_a_plug_in_that_cannot_be_used_is_refused_by_name(plugin, message):
    with pytest.raises(NPOConfigError, match=message):
        plugin_class(GuidanceConfig(plugin=plugin))
