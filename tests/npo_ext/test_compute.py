"""The equal-compute counter and the on-policy metrics taken before injection."""

from __future__ import annotations

import numpy as np
import torch
from verl import DataProto

from npo_ext.compute import ComputeCounter
from npo_ext.injection import on_policy_metrics


def test_counter_sums_guide_sampling_and_survives_a_restart(tmp_path) -> None:
    counter = ComputeCounter(optimizer_steps=5, lookahead_steps=2, rollout_tokens=100, guide_tokens=40)
    assert counter.metrics()["npo/compute/generated_tokens"] == 140.0
    path = tmp_path / "npo" / "compute.json"
    counter.save(path)
    assert ComputeCounter.load(path) == counter
    assert ComputeCounter.load(tmp_path / "missing.json") == ComputeCounter()


def test_on_policy_metrics_describe_the_batch_as_generated() -> None:
    rm = torch.zeros(4, 3)
    rm[:, -1] = torch.tensor([1.0, 0.0, 0.0, 0.5])
    batch = DataProto.from_dict(
        tensors={"rm_scores": rm, "response_mask": torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]])},
        non_tensors={"acc": np.array([1.0, 0.0, 0.0, 0.0])},
    )
    metrics = on_policy_metrics(batch, "acc")
    assert metrics == {
        "npo/onpolicy/score_mean": 0.375,
        "npo/onpolicy/response_length_mean": 2.25,
        "npo/onpolicy/acc_mean": 0.25,
    }
