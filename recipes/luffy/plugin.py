"""LUFFY's guidance (arXiv 2504.14945): the teacher's trace stored with each prompt, in every group it mixes."""

from __future__ import annotations

from npo_ext.guidance import GuidanceSource, TeacherSource
from recipes.common.guidance_plugin import GuidancePlugin


class TeacherGuidance(GuidancePlugin):
    """``guidance.source=teacher``: the trace in ``extra_info[guidance.teacher_field]``, every training step."""

    counts_external_tokens = True  # the teacher wrote them

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        tokenizer = trainer.tokenizer
        self._source = TeacherSource(
            lambda text: tokenizer.encode(text, add_special_tokens=False), trainer.guidance.teacher_field
        )

    def source(self) -> GuidanceSource:
        return self._source
