"""Cheaper guide collection from what the look-ahead already generated (``npo.collect_skip_expected_passes``,
``npo.collect_reuse_lookahead``; both off by default, our options, not the paper's).

The look-ahead trains on exactly the batches the guided window replays, so at the fork it has already rolled out n
responses for every window prompt. Collection can use that: a prompt the look-ahead solved often enough to pass the
gate is expected to pass it in the window too, so sampling guides for it is likely wasted; and a prompt with a
verified-correct look-ahead response already has a guide (from θ_{T+i}, i steps past the fork, rather than θ_{T+Δ}).

The look-ahead writes one JSON file per step (``batch_<i>.json``, i = the window batch), so a run killed during
collection still knows what the look-ahead saw; a killed look-ahead re-runs and overwrites them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from npo_ext.guide_pool import GuideSample, PromptGuides, sample_from_json
from npo_ext.persist import NPOStateError, atomic_write_json, read_json

PROVENANCE = "lookahead"


@dataclass
class LookaheadGroup:
    """One prompt's look-ahead group: its accuracy, its size and its verified-correct responses."""

    accuracy: float
    num_samples: int
    correct: list[GuideSample] = field(default_factory=list)


@dataclass(frozen=True)
class CollectionPlan:
    """Which prompts of a window batch to sample (positions), which take a look-ahead guide, which are skipped."""

    sample: list[int]
    reused: dict[str, PromptGuides]
    skipped: list[str]


def batch_path(directory: str | Path, batch_index: int) -> Path:
    return Path(directory) / f"batch_{batch_index:05d}.json"


def write_batch(directory: str | Path, batch_index: int, groups: Mapping[str, LookaheadGroup]) -> None:
    atomic_write_json(batch_path(directory, batch_index), {key: asdict(group) for key, group in groups.items()})


def load_batch(directory: str | Path, batch_index: int) -> dict[str, LookaheadGroup] | None:
    """The look-ahead's record of window batch ``batch_index``; None if the look-ahead never reached it (a window
    longer than Δ)."""
    path = batch_path(directory, batch_index)
    if not path.exists():
        return None
    payload = read_json(path, f"look-ahead record of batch {batch_index}")
    try:
        return {
            key: LookaheadGroup(
                float(raw["accuracy"]), int(raw["num_samples"]), [sample_from_json(s) for s in raw["correct"]]
            )
            for key, raw in payload.items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NPOStateError(f"look-ahead record of batch {batch_index} has an unexpected layout ({e!r}): {path}") from e


def plan_collection(
    keys: Sequence[str],
    seen: Mapping[str, LookaheadGroup] | None,
    gate: float,
    *,
    skip_expected_passes: bool,
    reuse_lookahead: bool,
    max_guides: int,
) -> CollectionPlan:
    """Decide per prompt (``keys`` in batch order): reuse a correct look-ahead response, skip an expected pass, or
    sample. A prompt the look-ahead did not see is always sampled."""
    sample: list[int] = []
    reused: dict[str, PromptGuides] = {}
    skipped: list[str] = []
    for position, key in enumerate(keys):
        group = None if seen is None else seen.get(key)
        if group is not None and reuse_lookahead and group.correct:
            kept = list(group.correct[:max_guides])
            reused[key] = PromptGuides(group.num_samples, len(group.correct), kept, q_unbiased=False)
        elif group is not None and skip_expected_passes and group.accuracy >= gate:
            skipped.append(key)
        else:
            sample.append(position)
    return CollectionPlan(sample, reused, skipped)
