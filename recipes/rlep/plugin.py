"""RLEP's guidance: an earlier run's verified-correct responses (``python -m recipes.rlep.collect``), drawn anew
every step and appended to each group (``guidance.mixing=append``)."""

from __future__ import annotations

from npo_ext.experience_file import ExperienceFileSource
from recipes.common.guidance_plugin import GuidancePlugin


class ExperienceFileGuidance(GuidancePlugin):
    """``guidance.source=experience_file``: the file ``guidance.experience_file``; its draws resume with checkpoints."""

    counts_external_tokens = True  # an earlier run generated them

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        guidance = trainer.guidance
        self._source = ExperienceFileSource(guidance.experience_file, trainer.npo.slots_per_group, guidance.seed)
        print(f"[npo] experience file {guidance.experience_file}: {len(self._source)} prompts", flush=True)

    def source(self) -> ExperienceFileSource:
        return self._source

    def state(self) -> ExperienceFileSource:
        return self._source
