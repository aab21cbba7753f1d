"""The LUFFY recipe on the tiny CPU demo, through the real actor and rollout: every group gets the prompt's teacher
trace, the registered ``npo_guided`` loss shapes those tokens, and advantages are not std-normalised."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS = 2


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("luffy")
    log = out / "steps.jsonl"
    env = dict(os.environ, OUT_DIR=str(out), PYTHON=sys.executable, VERL_FILE_LOGGER_PATH=str(log))
    proc = subprocess.run(
        ["bash", "scripts/run_npo.sh", "--local", "--recipe", "luffy", f"trainer.total_training_steps={STEPS}",
         "trainer.save_freq=-1", "trainer.logger=[console,file]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line)["data"] for line in log.read_text().splitlines()]


def test_every_group_gets_one_teacher_trace(records):
    assert len(records) == STEPS
    for step in records:
        assert step["npo/inject/groups"] > 0
        assert step["npo/inject/guide_rows"] == step["npo/inject/groups"]  # ungated: solved groups too


def test_the_registered_loss_shapes_the_teacher_tokens(records):
    for step in records:
        assert 0 < step["actor/npo_guide_token_frac"] < 1  # teacher tokens among on-policy ones
        assert 0 < step["actor/npo_shaped_weight_mean"] < 1  # f(p) = p / (p + 0.1) on them


def test_advantages_are_mean_centred_without_std_normalisation(records):
    # rewards lie in [0, 1]; with the group std in the denominator a group with one correct response of four would
    # give that response (1 - 0.25) / 0.5 = 1.5
    for step in records:
        assert step["critic/advantages/max"] <= 1.0 and step["critic/advantages/min"] >= -1.0
