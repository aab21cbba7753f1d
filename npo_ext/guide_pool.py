"""The guide pool: verified-correct responses of the near-future policy, keyed by prompt.

The pool is filled one window batch at a time during COLLECT and persisted one file per batch, so a run killed
mid-collection resumes without re-sampling or duplicating finished batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from npo_ext.persist import NPOStateError, atomic_write_json, read_json
from npo_ext.prompt_keys import DuplicatePromptKeyError


@dataclass(frozen=True)
class GuideSample:
    """One guide response (token ids, EOS included), its score, the step of the policy that wrote it, where it came
    from (``npo_ext.guidance``), and that policy's log-probs of its tokens when known (replay keeps them)."""

    response_ids: tuple[int, ...]
    score: float
    source_step: int
    provenance: str = "near_future"
    behaviour_log_probs: tuple[float, ...] | None = None


@dataclass
class PromptGuides:
    """What the guide did on one prompt: how many samples, how many verified-correct, and the kept ones.

    ``q_unbiased``: the counts come from one fixed-size draw of the guide θ_{T+Δ} itself, so pass@k over them
    estimates its Q without bias. False for a guide taken from the look-ahead (its counts are θ_{T+i}'s).
    """

    num_samples: int
    num_correct: int
    samples: list[GuideSample] = field(default_factory=list)
    q_unbiased: bool = True


def select_guides(candidates: Sequence[Sequence[int]], policy: str, limit: int) -> list[int]:
    """Indices of the candidates to keep, by ``policy`` (first / shortest / longest), at most ``limit``."""
    order = list(range(len(candidates)))
    if policy == "shortest":
        order.sort(key=lambda i: len(candidates[i]))
    elif policy == "longest":
        order.sort(key=lambda i: -len(candidates[i]))
    elif policy != "first":
        raise ValueError(f"unknown guide selection policy {policy!r}")
    return order[:limit]


class GuidePool:
    """In-memory pool, optionally backed by a directory of per-batch JSON files."""

    def __init__(self) -> None:
        self._by_key: dict[str, PromptGuides] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def add(self, key: str, entry: PromptGuides) -> None:
        """Record the guide's result on one prompt; a key seen before means two prompts collide (an error)."""
        key = str(key)
        if key in self._by_key:
            raise DuplicatePromptKeyError(
                f"prompt key {key!r} appears in more than one prompt of the guided window; npo.prompt_key must "
                "identify a prompt uniquely (verl sets index=0 for rows without extra_info.index)"
            )
        self._by_key[key] = entry

    def get(self, key: str) -> PromptGuides | None:
        return self._by_key.get(str(key))

    provenance = "near_future"

    def guides(self, key: str, prompt_row: Mapping[str, Any] | None = None) -> list[GuideSample]:
        """The verified-correct samples kept for ``key`` (the prompt row is not needed: the pool is keyed)."""
        entry = self._by_key.get(str(key))
        return entry.samples if entry else []

    def keys(self) -> Iterable[str]:
        return self._by_key.keys()

    @property
    def num_guides(self) -> int:
        return sum(len(e.samples) for e in self._by_key.values())

    @property
    def num_tokens(self) -> int:
        return sum(len(s.response_ids) for e in self._by_key.values() for s in e.samples)

    # --- persistence -------------------------------------------------------------------------------------------

    @staticmethod
    def batch_path(directory: str | Path, batch_index: int) -> Path:
        return Path(directory) / f"batch_{batch_index:05d}.json"

    @staticmethod
    def write_batch(directory: str | Path, batch_index: int, entries: dict[str, PromptGuides]) -> None:
        """Persist the guides collected for one window batch (atomic)."""
        payload = {key: asdict(entry) for key, entry in entries.items()}
        atomic_write_json(GuidePool.batch_path(directory, batch_index), payload)

    @classmethod
    def load(cls, directory: str | Path, num_batches: int) -> GuidePool:
        """Load batches ``0..num_batches-1``; a missing or corrupt batch file is an error naming the path.

        Files with a higher index are leftovers of a batch that was being written when the run died; they are
        ignored here and overwritten when that batch is collected again.
        """
        pool = cls()
        for i in range(num_batches):
            path = cls.batch_path(directory, i)
            payload = read_json(path, f"guide pool batch {i}")
            try:
                for key, raw in payload.items():
                    samples = [sample_from_json(s) for s in raw["samples"]]
                    counts = int(raw["num_samples"]), int(raw["num_correct"])
                    pool.add(key, PromptGuides(*counts, samples, bool(raw.get("q_unbiased", True))))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise NPOStateError(f"guide pool batch {i} has an unexpected layout ({e!r}): {path}") from e
        return pool


def sample_from_json(raw: dict[str, Any]) -> GuideSample:
    """A persisted sample; files written before ``provenance`` / ``behaviour_log_probs`` existed load too."""
    log_probs = raw.get("behaviour_log_probs")
    return GuideSample(
        tuple(int(t) for t in raw["response_ids"]),
        float(raw["score"]),
        int(raw["source_step"]),
        str(raw.get("provenance", "near_future")),
        None if log_probs is None else tuple(float(v) for v in log_probs),
    )
