"""The RLEP recipe on the tiny CPU demo, through the real actor and rollout: the collection command writes the
experience file from the demo model, training appends two stored successes to the groups of prompts in it (groups
of 4 generated + 2 replayed), and the draw state is saved with each checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from npo_ext.experience_file import read_experience

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS, PROMPTS, GROUP = 2, 4, 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rlep")
    log = out / "steps.jsonl"
    env = dict(os.environ, OUT_DIR=str(out), PYTHON=sys.executable, VERL_FILE_LOGGER_PATH=str(log))
    proc = subprocess.run(
        ["bash", "scripts/run_npo.sh", "--local", "--recipe", "rlep", f"trainer.total_training_steps={STEPS}",
         "trainer.save_freq=1", "trainer.logger=[console,file]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line)["data"] for line in log.read_text().splitlines()]
    return out, records, proc.stdout + proc.stderr


def test_the_collection_keeps_prompts_with_two_verified_successes_and_reports_the_rest(run):
    out, _, output = run
    header, entries = read_experience(out / "experience.jsonl")
    assert (header.samples_per_prompt, header.min_correct) == (8, 2)
    assert entries and all(len(responses) >= 2 for responses in entries.values())
    assert f"{len(entries)} prompts kept this run; {64 - len(entries)} skipped" in output


def test_groups_are_g_generated_plus_the_appended_replays(run):
    _, records, _ = run
    assert len(records) == STEPS
    assert sum(step["npo/inject/guide_rows"] for step in records) > 0, "no prompt of the file came up"
    for step in records:
        assert step["npo/inject/groups"] == PROMPTS
        assert step["npo/inject/guide_rows"] == 2 * step["npo/inject/replaced"], "two replays per prompt in the file"
        if step["npo/inject/guide_rows"]:
            # the batch is 4 groups of 6 rows: replays are appended to (not generated in) the group
            assert step["npo/guide/fraction_of_batch"] == pytest.approx(step["npo/inject/guide_rows"] / (4 * GROUP))
            # the replays are verified-correct responses: above their group's mean
            assert step["npo/guide/advantage_mean"] > 0


def test_the_draw_state_is_saved_with_every_checkpoint(run):
    out, _, _ = run
    for step in range(1, STEPS + 1):
        state = json.loads((out / "checkpoints" / f"global_step_{step}" / "guidance_source.json").read_text())
        assert state["rng"]["bit_generator"] == "PCG64"
