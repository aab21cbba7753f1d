"""LUFFY's guidance (arXiv 2504.14945): the teacher's trace stored with each prompt, in every group it mixes."""

from __future__ import annotations

import logging

from npo_ext.config import NPOConfigError
from npo_ext.guidance import GuidanceSource, TeacherSource
from recipes.common.guidance_plugin import GuidancePlugin
from recipes.luffy.trace_budget import count_fitting_traces, dataset_traces

logger = logging.getLogger(__name__)


class TeacherGuidance(GuidancePlugin):
    """``guidance.source=teacher``: the trace in ``extra_info[guidance.teacher_field]``, every training step."""

    counts_external_tokens = True  # the teacher wrote them

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        tokenizer, guidance = trainer.tokenizer, trainer.guidance
        self._source = TeacherSource(
            lambda text: tokenizer.encode(text, add_special_tokens=False), guidance.teacher_field
        )
        self.check_traces_fit()

    def check_traces_fit(self) -> None:
        """Say how many training prompts will get a trace; below ``guidance.teacher_min_fit_share`` fail (or warn,
        ``guidance.teacher_fit_check=warn``)."""
        trainer, guidance = self.trainer, self.trainer.guidance
        budget = trainer.config.data.max_response_length
        fit = count_fitting_traces(
            dataset_traces(trainer.train_dataset, guidance.teacher_field),
            lambda texts: trainer.tokenizer(texts, add_special_tokens=False)["input_ids"],
            trainer.eos_token_ids,
            budget,
        )
        print(f"[npo] {fit.summary(guidance.teacher_field, budget)}", flush=True)
        if fit.share >= guidance.teacher_min_fit_share:
            return
        problem = (
            f"only {fit.share:.1%} of the training prompts have a teacher trace that fits "
            f"(guidance.teacher_min_fit_share={guidance.teacher_min_fit_share}): the rest train all on-policy, and "
            "they lean towards the hard prompts. Shorten or drop the traces, raise data.max_response_length, or set "
            "guidance.teacher_fit_check=warn"
        )
        if guidance.teacher_fit_check == "error":
            raise NPOConfigError(problem)
        logger.warning(problem)
        print(f"[npo] warning: {problem}", flush=True)

    def source(self) -> GuidanceSource:
        return self._source
