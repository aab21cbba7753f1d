"""The stop contract's pieces: the request file and how the entry point recognises a stop for requeue."""

from recipes.npo.preemption import (
    STOP_REQUEST_FILE,
    StoppedForRequeue,
    clear_stop_request,
    is_stopped_for_requeue,
    stop_requested,
)


class RayTaskErrorLike(Exception):
    """Ray re-raises a remote exception in the driver wrapped, with the original as ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def test_a_stop_is_recognised_directly_through_ray_and_through_chaining():
    assert is_stopped_for_requeue(StoppedForRequeue(3))
    assert is_stopped_for_requeue(RayTaskErrorLike(StoppedForRequeue(3)))
    try:
        try:
            raise StoppedForRequeue(3)
        except StoppedForRequeue as stop:
            raise RuntimeError("wrapped") from stop
    except RuntimeError as chained:
        assert is_stopped_for_requeue(chained)


def test_other_failures_are_not_a_stop():
    assert not is_stopped_for_requeue(RuntimeError("NCCL timeout"))
    assert not is_stopped_for_requeue(RayTaskErrorLike(ValueError("bad batch")))


def test_the_request_is_seen_and_cleared(tmp_path):
    assert not stop_requested(tmp_path)
    (tmp_path / STOP_REQUEST_FILE).touch()
    assert stop_requested(tmp_path)
    clear_stop_request(tmp_path)
    assert not stop_requested(tmp_path)
    clear_stop_request(tmp_path)  # clearing twice is harmless (a resumed run clears nothing)
