"""The seam through which NPO replaces verl's per-step logger for one ``fit()`` call.

verl 0.9.1's ``RayPPOTrainer.fit()`` builds its logger inside the call (``from verl.utils.tracking import Tracking``,
then ``Tracking(...)``), so the class it gets is whatever ``verl.utils.tracking.Tracking`` names at that moment.
:func:`logging_with` binds that name for the duration of the call and restores it after, however the call ends.
``tests/recipes/test_step_logger.py`` pins the verl behaviour this relies on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import verl.utils.tracking as tracking


@contextmanager
def logging_with(logger_class: type[tracking.Tracking]) -> Iterator[None]:
    """While the block runs, verl's ``fit()`` logs through ``logger_class`` (a ``Tracking`` subclass)."""
    if not issubclass(logger_class, tracking.Tracking):
        raise TypeError(f"{logger_class!r} must subclass verl.utils.tracking.Tracking")
    original = tracking.Tracking
    tracking.Tracking = logger_class
    try:
        yield
    finally:
        tracking.Tracking = original
