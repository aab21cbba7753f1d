"""Guide-token losses against hand-computed values: which tokens are shaped, and no clipping on them."""

import math

import pytest
import torch

from npo_ext.loss_shaping import clipped_pg_loss, guided_policy_loss, shaped_weight

# two tokens: an on-policy one whose ratio (e^0.5 = 1.65) is far outside the clip range, and an off-policy one
LOG_PROB = torch.tensor([math.log(0.5), math.log(0.5)])
OLD = torch.tensor([math.log(0.5) - 0.5, math.log(0.5) - 0.5])
ADV = torch.tensor([2.0, 2.0])
OFF = torch.tensor([False, True])


def test_none_is_the_clipped_ppo_loss_on_every_token():
    loss = guided_policy_loss(LOG_PROB, OLD, ADV, OFF, "none")
    assert loss.tolist() == pytest.approx([-2.0 * 1.2, -2.0 * 1.2])  # ratio clipped at 1 + 0.2 for A > 0


def test_luffy_shapes_only_off_policy_tokens_with_p_over_p_plus_gamma_and_does_not_clip():
    loss = guided_policy_loss(LOG_PROB, OLD, ADV, OFF, "policy_prob", gamma=0.1)
    # on-policy: clipped as before; off-policy: −A · 0.5 / (0.5 + 0.1), π_teacher = 1, no ratio to π_old at all
    assert loss.tolist() == pytest.approx([-2.4, -2.0 * 0.5 / 0.6])
    # a token whose probability rose far above π_old is not clipped: its weight keeps growing toward 1
    high = guided_policy_loss(torch.tensor([math.log(0.99)]), torch.tensor([-5.0]), ADV[:1], OFF[1:], "policy_prob")
    assert high.item() == pytest.approx(-2.0 * 0.99 / 1.09)


def test_exgrpo_uses_the_recorded_behaviour_log_probs():
    behaviour = torch.tensor([0.0, math.log(0.25)])  # the past policy wrote the off-policy token with p = 0.25
    loss = guided_policy_loss(LOG_PROB, OLD, ADV, OFF, "behaviour_ratio", behaviour_log_prob=behaviour)
    w = 0.5 / 0.25
    assert loss.tolist() == pytest.approx([-2.4, -2.0 * w / (w + 0.1)])
    with pytest.raises(ValueError, match="behaviour log-probs"):
        guided_policy_loss(LOG_PROB, OLD, ADV, OFF, "behaviour_ratio")


def test_gradients_flow_through_the_shaped_weight_only_on_off_policy_tokens():
    log_prob = LOG_PROB.clone().requires_grad_(True)
    guided_policy_loss(log_prob, OLD, ADV, OFF, "policy_prob").sum().backward()
    # on-policy token: clipped (ratio 1.65 > 1.2 with A > 0) so no gradient; off-policy: d/dlogp [−A p/(p+γ)]
    p, gamma = 0.5, 0.1
    assert log_prob.grad.tolist() == pytest.approx([0.0, -2.0 * p * gamma / (p + gamma) ** 2])


def test_helpers_and_bad_mode():
    assert shaped_weight(torch.tensor([0.0]), None, 0.1).item() == pytest.approx(1 / 1.1)
    assert clipped_pg_loss(torch.zeros(1), torch.zeros(1), torch.ones(1), 0.2, 0.28).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="unknown loss shaping"):
        guided_policy_loss(LOG_PROB, OLD, ADV, OFF, "dapo")


def test_on_policy_tokens_get_exactly_verls_vanilla_ppo_loss():
    from omegaconf import OmegaConf
    from verl.trainer.ppo.core_algos import agg_loss, compute_policy_loss_vanilla

    gen = torch.Generator().manual_seed(0)
    log_prob, old = -torch.rand(3, 5, generator=gen) * 2, -torch.rand(3, 5, generator=gen) * 2
    advantages = torch.randn(3, 5, generator=gen)
    mask = torch.ones(3, 5)
    mask[2, 3:] = 0
    clips = {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0}
    config = OmegaConf.create({**clips, "global_batch_info": {}})
    expected, _ = compute_policy_loss_vanilla(old, log_prob, advantages, mask, "token-mean", config)
    per_token = guided_policy_loss(
        log_prob, old, advantages, torch.zeros(3, 5, dtype=torch.bool), "policy_prob", clip_high=0.28, dual_clip=3.0
    )
    assert agg_loss(per_token, mask, "token-mean").item() == pytest.approx(expected.item(), rel=1e-6)
