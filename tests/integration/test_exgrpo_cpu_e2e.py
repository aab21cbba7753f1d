"""The ExGRPO recipe on the tiny CPU demo, through the real actor and rollout: the run's partly solved prompts enter
the pool with the actor's log-probs, come back as experience questions with one replayed response, the registered
loss shapes those tokens by π_θ / π_past, and the pool resumes from the checkpoint."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

STEPS, RESUMED_STEPS, ROWS = 4, 6, 16


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_recipe):
    out = tmp_path_factory.mktemp("exgrpo")
    records, _ = demo_recipe(out, "exgrpo", STEPS, "trainer.save_freq=2")
    resumed, _ = demo_recipe(out, "exgrpo", RESUMED_STEPS, "trainer.save_freq=2", "trainer.resume_mode=auto")
    return out, records, resumed


def test_partly_solved_prompts_come_back_with_one_replayed_response(run):
    _, records, _ = run
    assert len(records) == STEPS
    assert records[0]["npo/replay/questions"] == 0, "nothing is stored before the first step"
    replayed = [step for step in records if step.get("npo/inject/guide_rows")]
    assert replayed, "the demo model solves some prompts partly in the first steps (pool: %s)" % [
        step["npo/replay/pool_questions"] for step in records
    ]
    for step in replayed:
        assert step["npo/inject/guide_rows"] == step["npo/replay/questions"] <= 2, "one slot per experience question"
        assert step["npo/guide/fraction_of_batch"] == pytest.approx(step["npo/inject/guide_rows"] / ROWS)
        assert 0 < step["actor/npo_guide_token_frac"] < 1


def test_the_replayed_tokens_are_shaped_by_the_ratio_to_the_recorded_log_probs(run):
    _, records, _ = run
    for step in records:
        if step.get("npo/inject/guide_rows"):
            # f(w) = w / (w + 0.1) with w = π_θ / π_past: the writer is a step or two back, so w is near 1
            assert 0.8 < step["actor/npo_shaped_weight_mean"] < 1.0
            assert step["npo/signal/v"] >= 0.5
            # Q is measured only on groups whose generated responses all fail; the sampled batch may have none
            assert ("npo/signal/q" in step) == (step["npo/signal/q_prompts"] > 0)


def test_the_pool_is_saved_with_each_checkpoint_and_resumes(run):
    out, records, resumed = run
    state = json.loads((out / "checkpoints" / f"global_step_{STEPS}" / "guidance_source.json").read_text())
    assert state["started"] and len(state["questions"]) == records[-1]["npo/replay/pool_questions"]
    for question in state["questions"].values():
        for response in question["responses"]:
            assert len(response["behaviour_log_probs"]) == len(response["response_ids"])
    assert len(resumed) == RESUMED_STEPS - STEPS
    # drawn at the first resumed step's boundary, before that step stored anything: the pool came from the checkpoint
    assert resumed[0]["npo/replay/questions"] > 0


def test_a_verl_checkpoint_is_merged_and_evaluated_by_the_suite_command(run, assets, tmp_path):
    """`python -m verifiers.suite` on the run's last checkpoint: verl's merger, then the evaluation, once."""
    out, _, _ = run
    checkpoint = max((out / "checkpoints").glob("global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text("benchmarks:\n  - {name: Shapes, data: val.parquet}\n")
    command = [sys.executable, "-m", "verifiers.suite", "run", "--model", str(checkpoint), "--name", "exgrpo"]
    command += ["--data-dir", str(assets / "data"), "--suite", str(suite_file), "--output", str(tmp_path)]
    command += ["--backend", "transformers", "--max-new-tokens", "16", "--batch-size", "8"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "merging" in first.stderr and (tmp_path / "exgrpo" / "merged_hf" / "model.safetensors").is_file()
    header, row = (tmp_path / "exgrpo" / "table.csv").read_text().splitlines()
    assert header == "model,Shapes,Avg" and row.startswith("exgrpo,")
    assert len((tmp_path / "exgrpo" / "Shapes.jsonl").read_text().splitlines()) == 8
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "merging" not in again.stderr and again.stdout == first.stdout
