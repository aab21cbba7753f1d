"""The compute NPO spends, counted cumulatively so runs compare with GRPO at equal cost.

Look-ahead steps are thrown away at rollback and guide sampling is extra generation, so a fair x-axis counts them:
``optimizer_steps`` includes look-ahead steps (``lookahead_steps`` of them), and ``generated_tokens`` includes
guide sampling (``guide_tokens`` of them). Work that generates nothing is counted beside them: ``scored_tokens``
are response tokens put through a forward pass training does not need (V's passes over the guide's samples, the
distillation teacher's over a guided step's rollouts), and
``external_tokens`` are response tokens of injected guides the run did not generate (a teacher's traces, an
experience file's responses). The counter is never rolled back; it lives in its own file in the NPO
state folder, rewritten atomically after each step, so a resumed run continues it. Work done between the last
write and a kill is not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from npo_ext.persist import atomic_write_json, read_json


@dataclass
class ComputeCounter:
    """Cumulative optimizer steps and generated response tokens, look-ahead and guide sampling included; scored and
    external tokens apart."""

    optimizer_steps: int = 0
    lookahead_steps: int = 0
    rollout_tokens: int = 0
    guide_tokens: int = 0
    scored_tokens: int = 0
    external_tokens: int = 0

    @property
    def generated_tokens(self) -> int:
        return self.rollout_tokens + self.guide_tokens

    def metrics(self) -> dict[str, float]:
        counts = {**asdict(self), "generated_tokens": self.generated_tokens}
        return {f"npo/compute/{name}": float(value) for name, value in counts.items()}

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> ComputeCounter:
        """The counter saved at ``path``, or a fresh one when there is none."""
        if not path.exists():
            return cls()
        return cls(**{k: int(v) for k, v in read_json(path, "NPO compute counter").items()})
