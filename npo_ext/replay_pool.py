"""ExGRPO's experience pool: the run's own correct responses, replayed on medium-difficulty questions.

Facts (ExGRPO, arXiv 2510.02245, and its release in github.com/ElliottYan/LUFFY): after each step, every prompt with
1..n−1 of n responses correct has its correct responses stored with the log-probs of the policy that wrote them; a
prompt solved n/n is retired (removed, never stored again, and left out of later epochs' data by
``npo_ext.retiring_sampler``). Replay starts once a batch's accuracy exceeds 0.35.
Experience questions are drawn by bucket, k = the prompt's latest number of successes, bucket weight N(k; μ = n/2, σ =
1), multinomial over buckets and uniform within one; of a question's stored responses the one with the lowest entropy
under the current policy is replayed. A question is asked again through its position in the training dataset. The pool's
state is JSON-able and saved with checkpoints.

One step's use: :meth:`ReplayPool.draw` picks the step's experience questions, the trainer measures the entropy of
each one's :meth:`~ReplayPool.candidates` under the current policy and hands them to :meth:`~ReplayPool.choose`; as
a guidance source the pool then offers the chosen response for those questions only.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from npo_ext.config import GuidanceConfig
from npo_ext.guide_pool import GuideSample, sample_from_json


@dataclass
class Experience:
    """A question's stored successes, where it sits in the training data, and its latest success count."""

    successes: int
    dataset_position: int
    responses: list[GuideSample] = field(default_factory=list)


@dataclass(frozen=True)
class ReplaySettings:
    n: int = 8  # the group size whose middle (n/2) the bucket weights favour
    start_accuracy: float = GuidanceConfig.replay_start_accuracy
    sigma: float = GuidanceConfig.replay_sigma
    max_responses_per_question: int = GuidanceConfig.replay_max_responses  # ours: ExGRPO keeps every success


class ReplayPool:
    """Stores, retires and draws experience; as a guidance source it offers each drawn question's chosen response."""

    provenance = "replay"

    def __init__(self, settings: ReplaySettings, seed: int = 0) -> None:
        self.settings = settings
        self.questions: dict[str, Experience] = {}
        self.retired: dict[str, int] = {}  # a retired question's key -> its dataset position
        self.started = False
        self.rng = np.random.default_rng(seed)
        self.drawn: list[str] = []  # this step's experience questions
        self.chosen: dict[str, GuideSample] = {}  # their selected responses

    def __len__(self) -> int:
        return len(self.questions)

    def observe(
        self,
        key: str,
        dataset_position: int,
        successes: Sequence[GuideSample],
        num_correct: int,
        group_size: int,
    ) -> None:
        """One group's outcome: ``num_correct`` of its ``group_size`` generated responses were correct;
        ``successes`` are the ones that can be replayed, with their log-probs (possibly fewer: the caller leaves out
        responses cut off at the length limit)."""
        if key in self.retired:
            return
        if num_correct >= group_size:
            self.questions.pop(key, None)
            self.retired[key] = int(dataset_position)
            return
        if num_correct <= 0:
            return  # nothing to learn from; an earlier success (if any) stays
        entry = self.questions.get(key)
        if entry is None:
            if not successes:
                return  # a question is stored with something to replay
            entry = self.questions[key] = Experience(num_correct, int(dataset_position))
        entry.successes = num_correct
        entry.responses.extend(successes)
        del entry.responses[: -self.settings.max_responses_per_question]

    def retired_positions(self) -> set[int]:
        """Where the retired questions sit in the training data (what later epochs leave out)."""
        return set(self.retired.values())

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

    def sample_questions(self, count: int, exclude: Collection[str] = ()) -> list[str]:
        """Up to ``count`` distinct question keys not in ``exclude``: a bucket by weight, then a question uniformly
        within it."""
        by_bucket: dict[int, list[str]] = {}
        for key, entry in sorted(self.questions.items()):
            if key not in exclude:
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

    def draw(self, count: int, exclude: Collection[str] = ()) -> list[tuple[str, int]]:
        """This step's experience questions as ``(key, dataset position)``; none before replay has started. Forgets
        the previous step's."""
        self.chosen = {}
        self.drawn = self.sample_questions(count, exclude) if self.started else []
        return [(key, self.questions[key].dataset_position) for key in self.drawn]

    def candidates(self, key: str) -> list[GuideSample]:
        """A question's stored responses, in storage order."""
        entry = self.questions.get(key)
        return list(entry.responses) if entry else []

    def choose(self, key: str, entropies: Sequence[float]) -> GuideSample:
        """Select the candidate with the lowest entropy under the current policy (``entropies`` in candidate order)."""
        candidates = self.candidates(key)
        if len(entropies) != len(candidates) or not candidates:
            raise ValueError(f"question {key!r}: {len(entropies)} entropies for {len(candidates)} candidates")
        self.chosen[key] = candidates[int(np.argmin(entropies))]
        return self.chosen[key]

    def guides(self, prompt_key: str, prompt_row: Mapping[str, Any] | None = None) -> list[GuideSample]:
        """The chosen response of a question drawn this step; nothing for any other prompt."""
        sample = self.chosen.get(prompt_key)
        return [] if sample is None else [sample]

    def state_dict(self) -> dict[str, Any]:
        return {
            "questions": {k: asdict(e) for k, e in self.questions.items()},
            "retired": dict(sorted(self.retired.items())),
            "started": self.started,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.questions = {
            key: Experience(
                int(raw["successes"]),
                int(raw["dataset_position"]),
                [sample_from_json(r) for r in raw["responses"]],
            )
            for key, raw in state["questions"].items()
        }
        if not isinstance(state["retired"], Mapping):
            raise ValueError(
                "this replay pool state lists retired questions without their dataset positions (saved before "
                "retired questions left the training data); resume it with the code that saved it"
            )
        self.retired = {key: int(position) for key, position in state["retired"].items()}
        self.started = bool(state["started"])
        self.rng.bit_generator.state = state["rng"]
        self.drawn, self.chosen = [], {}
