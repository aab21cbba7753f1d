"""ExGRPO's experience pool: the run's own correct responses, replayed on medium-difficulty questions.

Facts (``shared/reference/npo-method.md`` §7.2): after each step, every prompt with 1..n−1 of n responses correct
has its correct responses stored with the log-probs of the policy that wrote them; a prompt solved n/n is retired
(removed, never stored again). Replay starts once a batch's accuracy exceeds 0.35. Experience questions are drawn by
bucket, k = the prompt's latest number of successes, bucket weight N(k; μ = n/2, σ = 1), multinomial over buckets
and uniform within one; of a question's stored responses the one with the lowest entropy under the current policy is
replayed. The pool's state is JSON-able and saved with checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from npo_ext.guide_pool import GuideSample, sample_from_json


@dataclass
class Experience:
    """A question's stored successes, the prompt row needed to ask it again, and its latest success count."""

    successes: int
    prompt_row: dict[str, Any]
    responses: list[GuideSample] = field(default_factory=list)


@dataclass(frozen=True)
class ReplaySettings:
    n: int = 8
    start_accuracy: float = 0.35
    sigma: float = 1.0
    max_responses_per_question: int = 8  # ours: ExGRPO keeps every success; a cap bounds memory


class ReplayPool:
    """Stores, retires and draws experience; ``guides`` makes it a guidance source (best = lowest entropy first)."""

    provenance = "replay"

    def __init__(self, settings: ReplaySettings, seed: int = 0) -> None:
        self.settings = settings
        self.questions: dict[str, Experience] = {}
        self.retired: set[str] = set()
        self.started = False
        self.rng = np.random.default_rng(seed)
        self.entropy_of: Callable[[GuideSample], float] | None = None

    def __len__(self) -> int:
        return len(self.questions)

    def observe(
        self, key: str, prompt_row: Mapping[str, Any], successes: Sequence[GuideSample], num_correct: int
    ) -> None:
        """One group's outcome: ``num_correct`` of n; ``successes`` are its correct responses with their log-probs."""
        n = self.settings.n
        if key in self.retired:
            return
        if num_correct >= n:
            self.questions.pop(key, None)
            self.retired.add(key)
            return
        if num_correct <= 0:
            return  # nothing to learn from; an earlier success (if any) stays
        entry = self.questions.setdefault(key, Experience(num_correct, dict(prompt_row)))
        entry.successes = num_correct
        entry.responses.extend(successes)
        del entry.responses[: -self.settings.max_responses_per_question]

    def update_start(self, batch_accuracy: float) -> bool:
        """Replay switches on (for good) once a batch's accuracy exceeds ``start_accuracy``."""
        self.started = self.started or batch_accuracy > self.settings.start_accuracy
        return self.started

    def bucket_weights(self) -> dict[int, float]:
        """Weight of each non-empty bucket k: the Gaussian density N(k; n/2, σ), unnormalised."""
        return self._weights({e.successes for e in self.questions.values()})

    def _weights(self, buckets: Iterable[int]) -> dict[int, float]:
        mu, sigma = self.settings.n / 2, self.settings.sigma
        return {k: math.exp(-0.5 * ((k - mu) / sigma) ** 2) for k in sorted(buckets)}

    def sample_questions(self, count: int) -> list[str]:
        """Up to ``count`` distinct question keys: a bucket by weight, then a question uniformly within it."""
        by_bucket: dict[int, list[str]] = {}
        for key, entry in sorted(self.questions.items()):
            by_bucket.setdefault(entry.successes, []).append(key)
        chosen: list[str] = []
        while by_bucket and len(chosen) < count:
            weights = self._weights(by_bucket)
            buckets = list(weights)
            p = np.array([weights[k] for k in buckets])
            bucket = buckets[int(self.rng.choice(len(buckets), p=p / p.sum()))]
            keys = by_bucket[bucket]
            chosen.append(keys.pop(int(self.rng.integers(len(keys)))))
            if not keys:
                del by_bucket[bucket]
        return chosen

    def guides(self, prompt_key: str, prompt_row: Mapping[str, Any] | None = None) -> list[GuideSample]:
        """The question's stored responses, lowest entropy under the current policy first (``entropy_of``)."""
        entry = self.questions.get(prompt_key)
        if entry is None:
            return []
        if self.entropy_of is None:
            raise RuntimeError("ReplayPool.entropy_of must be set to the current policy's entropy before replay")
        return sorted(entry.responses, key=self.entropy_of)

    def state_dict(self) -> dict[str, Any]:
        return {
            "questions": {k: asdict(e) for k, e in self.questions.items()},
            "retired": sorted(self.retired),
            "started": self.started,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.questions = {
            key: Experience(
                int(raw["successes"]),
                dict(raw["prompt_row"]),
                [sample_from_json(r) for r in raw["responses"]],
            )
            for key, raw in state["questions"].items()
        }
        self.retired = set(state["retired"])
        self.started = bool(state["started"])
        self.rng.bit_generator.state = state["rng"]
