"""Guidance sources: where the off-policy trajectories mixed into GRPO groups come from.

The paper's thesis is that the source decides the quality/variance trade-off: an external teacher gives high Q and
high V, replay gives low V and capped Q, the near future gives both. So sources are interchangeable parts behind one
protocol, and :func:`npo_ext.injection.inject_guidance` takes any of them:

* near future (NPO): :class:`npo_ext.guide_pool.GuidePool`, the verified-correct samples of θ_{T+Δ};
* teacher (LUFFY): :class:`TeacherSource`, a trace stored with the prompt (MMFineReason's teacher response);
* replay of the run's own successes (ExGRPO): :class:`npo_ext.replay_pool.ReplayPool`.

Which groups receive guides is the injection's ``gated`` switch: NPO only gates groups below ``npo.gate``; LUFFY
and ExGRPO put their trajectory into every group they mix (LUFFY, arXiv 2504.14945; ExGRPO, arXiv 2510.02245).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from npo_ext.guide_pool import GuideSample

TEACHER_FIELD = "teacher_response"


class GuidanceSource(Protocol):
    """Supplies candidate trajectories for a prompt; ``provenance`` tags them in metrics and pool files. A source
    with state persists it itself (the guide pool per window batch, the replay pool with checkpoints)."""

    provenance: str

    def guides(self, prompt_key: str, prompt_row: Mapping[str, Any]) -> Sequence[GuideSample]:
        """Candidates for the prompt ``prompt_key``, whose non-tensor fields (``extra_info``, ``reward_model``...)
        are ``prompt_row``; best first. Empty when the source has nothing for it."""


class TeacherSource:
    """LUFFY's external teacher: the trace stored in the prompt's ``extra_info[field]``, tokenised on demand.

    The trace is taken as the teacher wrote it (LUFFY does not verify it; the injected row's reward is recomputed
    like every guide's). It has no behaviour log-probs: LUFFY treats the teacher's probability as 1.
    """

    provenance = "teacher"

    def __init__(self, tokenize: Callable[[str], list[int]], field: str = TEACHER_FIELD) -> None:
        self.tokenize, self.field = tokenize, field

    def guides(self, prompt_key: str, prompt_row: Mapping[str, Any]) -> list[GuideSample]:
        extra = prompt_row.get("extra_info") or {}
        text = extra.get(self.field) if isinstance(extra, Mapping) else None
        if not isinstance(text, str) or not text.strip():
            return []
        return [GuideSample(tuple(self.tokenize(text)), math.nan, -1, provenance=self.provenance)]
