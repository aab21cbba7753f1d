"""Guide pool selection and per-batch persistence."""

import pytest

from npo_ext.guide_pool import GuidePool, GuideSample, PromptGuides, select_guides
from npo_ext.persist import NPOStateError


def test_select_guides_policies():
    cands = [[1, 2, 3], [1], [1, 2]]
    assert select_guides(cands, "first", 2) == [0, 1]
    assert select_guides(cands, "shortest", 2) == [1, 2]
    assert select_guides(cands, "longest", 1) == [0]
    with pytest.raises(ValueError):
        select_guides(cands, "best", 1)


def test_round_trip_by_batch(tmp_path):
    GuidePool.write_batch(tmp_path, 0, {"a": PromptGuides(8, 1, [GuideSample((5, 6, 2), 1.0, 7)])})
    GuidePool.write_batch(tmp_path, 1, {"b": PromptGuides(8, 0, [])})
    GuidePool.write_batch(tmp_path, 2, {"c": PromptGuides(8, 3, [GuideSample((9, 2), 0.9, 7)])})  # leftover
    pool = GuidePool.load(tmp_path, num_batches=2)
    assert set(pool.keys()) == {"a", "b"}
    assert pool.guides("a") == [GuideSample((5, 6, 2), 1.0, 7)]
    assert pool.guides("b") == [] and pool.get("b").num_samples == 8
    assert pool.num_guides == 1 and pool.num_tokens == 3


def test_missing_or_corrupt_batch_names_the_file(tmp_path):
    with pytest.raises(NPOStateError, match="batch_00000.json"):
        GuidePool.load(tmp_path, num_batches=1)
    GuidePool.batch_path(tmp_path, 0).write_text("{not json")
    with pytest.raises(NPOStateError, match="corrupt.*batch_00000.json"):
        GuidePool.load(tmp_path, num_batches=1)
    GuidePool.batch_path(tmp_path, 0).write_text('{"a": {"samples": 3}}')
    with pytest.raises(NPOStateError, match="unexpected layout"):
        GuidePool.load(tmp_path, num_batches=1)
