"""Guidance sources and mixing policies: where off-policy trajectories come from, and how they enter a GRPO group.

The paper's thesis is that the source decides the quality/variance trade-off: an external teacher gives high Q and
high V, replay gives low V and capped Q, the near future gives both. So sources are interchangeable parts behind one
protocol, and :func:`npo_ext.injection.inject_guidance` takes any of them:

* near future (NPO): :class:`npo_ext.guide_pool.GuidePool`, the verified-correct samples of θ_{T+Δ};
* teacher (LUFFY): :class:`TeacherSource`, a trace stored with the prompt (MMFineReason's teacher response);
* replay of the run's own successes (ExGRPO): :class:`npo_ext.replay_pool.ReplayPool`.

A :class:`MixingPolicy` says which groups receive guides and how many; the presets follow each paper (facts in
``shared/reference/npo-method.md`` §7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class MixingPolicy:
    """Which groups get guides, and how: ``gated`` = only groups whose on-policy accuracy is below ``gate``;
    ``mode`` = ``replace`` slots (the group keeps n rows) or ``append`` rows (n + count); ``count`` per group."""

    gated: bool = True
    gate: float = 0.6
    mode: str = "replace"
    count: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("replace", "append"):
            raise ValueError(f"mixing mode must be 'replace' or 'append', got {self.mode!r}")
        if self.count < 1:
            raise ValueError(f"mixing count must be >= 1, got {self.count}")
        if not 0.0 < self.gate <= 1.0:
            raise ValueError(f"mixing gate must be in (0, 1], got {self.gate}")


MIXING_PRESETS = {
    "npo": MixingPolicy(gated=True, gate=0.6, mode="replace", count=1),  # one slot of a group below 0.6
    "luffy": MixingPolicy(gated=False, mode="replace", count=1),  # 7 on-policy + 1 teacher trace, every prompt
    "exgrpo": MixingPolicy(gated=False, mode="replace", count=1),  # experience questions: 1 replayed + 7 fresh
    "rlep": MixingPolicy(gated=False, mode="append", count=2),  # n fresh + 2 replayed, advantages over n + 2
}


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
