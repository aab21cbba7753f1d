"""Near-future distillation's loss term, on verl's own micro-batch layout: it is added only when the batch asks for
it, masks guide rows, and its gradient moves the student toward the teacher."""

from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from verl import DataProto
from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.padding import left_right_2_no_padding

from npo_ext.injection import IS_GUIDE
from recipes.npo.distill_loss import COEF_METRIC, KL_METRIC, TEACHER_LOG_PROB, add_distillation, mark_distillation

PROMPT, RESPONSE, VOCAB = 2, 6, 5


def micro_batch(responses, teacher_log_prob, is_guide, coef=0.5, estimator="k3+", skip_guide_rows=True):
    """A padded batch marked for distillation, then packed the way verl's actor receives it."""
    rows = len(responses)
    prompts = torch.ones(rows, PROMPT, dtype=torch.long)
    batch = DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], 1),
            "attention_mask": torch.ones(rows, PROMPT + RESPONSE, dtype=torch.long),
            "position_ids": torch.arange(PROMPT + RESPONSE).expand(rows, -1).clone(),
            "response_mask": torch.ones(rows, RESPONSE, dtype=torch.long),
            TEACHER_LOG_PROB: teacher_log_prob,
            IS_GUIDE: is_guide,
        }
    )
    mark_distillation(batch, coef, estimator, skip_guide_rows)
    return left_right_2_no_padding(batch.to_tensordict())


def packed(token_log_probs):
    """The actor's per-position output: position t holds the log-prob of token t+1 (verl's shift)."""
    rows = token_log_probs.shape[0]
    values = torch.zeros(rows, PROMPT + RESPONSE, dtype=token_log_probs.dtype)
    values = values.index_put((torch.arange(rows)[:, None], torch.arange(PROMPT - 1, PROMPT + RESPONSE - 1)),
                              token_log_probs)  # fmt: skip
    return values.reshape(-1)


def config(tokens):
    info = {"dp_size": 1, "batch_num_tokens": tokens, "global_batch_size": None, "loss_scale_factor": None}
    return SimpleNamespace(loss_agg_mode="token-mean", global_batch_info=info)


def pg_metrics():
    return {"actor/pg_loss": Metric(AggregationType.SUM, 0.0)}


def test_without_the_marks_the_loss_is_verls():
    data = TensorDict({}, batch_size=[])
    loss = torch.tensor(1.5)
    assert add_distillation(config(1), {}, data, loss, {}) == (loss, {})


def test_the_term_is_coef_times_the_token_mean_kl_over_on_policy_rows():
    torch.manual_seed(0)
    responses = torch.randint(0, VOCAB, (3, RESPONSE))
    student, teacher = -torch.rand(3, RESPONSE) - 0.1, -torch.rand(3, RESPONSE) - 0.1
    teacher[2] = -30.0  # the guide row: a huge KL, which must not count
    data = micro_batch(responses, teacher, torch.tensor([False, False, True]), coef=0.5, estimator="k1")
    loss, metrics = add_distillation(config(18), {"log_probs": packed(student)}, data, torch.tensor(1.0), pg_metrics())
    expected_kl = (student[:2] - teacher[:2]).sum() / 18  # k1, token-mean over the update's 18 tokens
    assert metrics[KL_METRIC].values[0] == pytest.approx(float(expected_kl))
    assert torch.allclose(loss, 1.0 + 0.5 * expected_kl)
    assert metrics[COEF_METRIC] == 0.5


def test_the_k3_plus_gradient_moves_the_student_toward_the_teacher():
    """A categorical student trained on the term alone, from its own samples, ends much closer to the teacher."""
    torch.manual_seed(0)
    teacher = torch.log_softmax(torch.tensor([2.0, 0.0, -1.0, 1.0, -2.0]), -1)
    logits = torch.zeros(VOCAB, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=0.5)

    def kl_to_teacher():
        p = torch.log_softmax(logits, -1)
        return float((p.exp() * (p - teacher)).sum().detach())

    before = kl_to_teacher()
    for _ in range(150):
        student = torch.log_softmax(logits, -1)
        responses = torch.multinomial(student.detach().exp(), 8 * RESPONSE, replacement=True).view(8, RESPONSE)
        data = micro_batch(responses, teacher[responses], torch.zeros(8, dtype=torch.bool), coef=1.0)
        loss, _ = add_distillation(
            config(8 * RESPONSE), {"log_probs": packed(student[responses])}, data, torch.zeros(()), pg_metrics()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert kl_to_teacher() < 0.1 * before, (before, kl_to_teacher())
