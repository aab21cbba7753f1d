"""NPO's step logger reaches verl's ``fit()`` only because of how verl 0.9.1 builds its logger: pinned here."""

import inspect

import pytest
import verl.utils.tracking as tracking
from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from recipes.npo.step_logger import logging_with


def test_verl_fit_looks_the_logger_class_up_when_it_runs():
    # if verl imports Tracking at module level or builds the logger elsewhere, logging_with stops reaching it
    source = inspect.getsource(RayPPOTrainer.fit)
    assert "from verl.utils.tracking import Tracking" in source and "Tracking(" in source
    assert not hasattr(inspect.getmodule(RayPPOTrainer), "Tracking")


class Marked(tracking.Tracking):
    pass


def test_the_logger_is_swapped_for_the_block_and_restored_even_when_it_raises():
    original = tracking.Tracking
    with logging_with(Marked):
        from verl.utils.tracking import Tracking  # what fit() does

        assert Tracking is Marked
    assert tracking.Tracking is original
    with pytest.raises(RuntimeError), logging_with(Marked):
        raise RuntimeError("a failed step")
    assert tracking.Tracking is original


def test_only_a_tracking_subclass_is_accepted():
    with pytest.raises(TypeError, match="must subclass"), logging_with(dict):
        pass
