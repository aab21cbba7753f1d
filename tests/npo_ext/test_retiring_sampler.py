"""Retired questions leave later epochs' data; an epoch keeps its planned length; a resumed epoch leaves out what the
original left out."""

import pytest
import torch
from torch.utils.data import SequentialSampler
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import RandomSampler

from npo_ext.retiring_sampler import NothingLeftToTrainOn, RetiringSampler

SIZE, BATCH = 8, 2


def loader_over(
    retired: set[int], shuffle: bool = True, workers: int = 0
) -> tuple[StatefulDataLoader, RetiringSampler]:
    """verl's training dataloader (``_create_dataloader``: StatefulDataLoader, drop_last) over positions 0..7."""
    data = list(range(SIZE))
    generator = torch.Generator()
    generator.manual_seed(3)
    inner = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
    sampler = RetiringSampler(inner, retired=lambda: retired)
    loader = StatefulDataLoader(data, batch_size=BATCH, sampler=sampler, drop_last=True, num_workers=workers)
    return loader, sampler


def positions(batches) -> list[int]:
    return [int(p) for batch in batches for p in batch]


def test_questions_retired_during_an_epoch_leave_the_next_one_which_keeps_its_length():
    retired: set[int] = set()
    loader, _ = loader_over(retired)
    first = []
    for i, batch in enumerate(loader):
        first.extend(int(p) for p in batch)
        if i == 0:
            retired.update({1, 2, 3})  # solved n/n during the first epoch's first step
    assert sorted(first) == list(range(SIZE)), "the set is fixed when an epoch starts: the first epoch is whole"
    second = positions(loader)
    assert len(second) == SIZE, "an epoch keeps the number of batches verl planned"
    assert not {1, 2, 3} & set(second)
    assert set(second) == {0, 4, 5, 6, 7}, "every unretired question is asked; the gaps are filled from them"


@pytest.mark.parametrize(("shuffle", "workers"), [(True, 0), (False, 0), (True, 2)])
def test_a_resumed_epoch_leaves_out_what_the_original_left_out(shuffle, workers):
    retired = {2, 5}
    loader, _ = loader_over(retired, shuffle, workers)
    positions(loader)  # the first epoch
    iterator = iter(loader)  # the second epoch freezes {2, 5}
    next(iterator)
    state = loader.state_dict()
    rest = positions(iterator)
    # what the live pool says after the kill no longer matters
    resumed_loader, _ = loader_over({0, 1, 3}, shuffle, workers)
    resumed_loader.load_state_dict(state)
    assert positions(resumed_loader) == rest
    assert not {2, 5} & set(rest) and len(rest) == SIZE - BATCH


def test_all_questions_retired_is_a_clear_error():
    loader, _ = loader_over(set(range(SIZE)))
    with pytest.raises(NothingLeftToTrainOn, match="all 8 training questions are retired.*replay_drop_retired"):
        next(iter(loader))


def test_nothing_retired_is_the_wrapped_sampler_unchanged():
    loader, _ = loader_over(set())
    generator = torch.Generator()
    generator.manual_seed(3)
    plain = StatefulDataLoader(
        list(range(SIZE)),
        batch_size=BATCH,
        sampler=RandomSampler(list(range(SIZE)), generator=generator),
        drop_last=True,
    )
    for _ in range(2):
        assert positions(loader) == positions(plain)
