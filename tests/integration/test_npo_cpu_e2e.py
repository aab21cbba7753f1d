"""One full NPO intervention through Ray, verl's real fit(), the FSDP2 actor on CPU and real generation.

Each run is a subprocess (tests/integration/npo_cpu_probe.py) that records what the trainer saw.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

# The fork step is not a multiple of save_freq, so the rollback writes the fork step's real checkpoint itself.
FORK_STEP, DELTA = 1, 2
OVERRIDES = [
    "trainer.total_training_steps=6",
    "trainer.save_freq=2",
    f"npo.interventions=[{{at_step:{FORK_STEP},delta:{DELTA}}}]",
    "npo.guide_n=16",
    "trainer.max_actor_ckpt_to_keep=4",
]


@pytest.fixture(scope="session")
def run_probe(probe):
    def run(demo_dir: Path, name: str, *extra: str, overrides=OVERRIDES) -> tuple[int, dict, str]:
        return probe(sys.executable, demo_dir, name, [*overrides, *extra], timeout=600)

    return run


@pytest.fixture(scope="module")
def first_run(new_demo_dir, run_probe, tmp_path_factory):
    demo = new_demo_dir(tmp_path_factory.mktemp("run"))
    code, report, log = run_probe(demo, "fresh")
    assert code == 0, log[-4000:]
    return demo, report, log


def steps_in(report, phase):
    return {s["step"]: s for s in report["steps"] if s["phase"] == phase}


def test_rollback_restores_the_snapshot_weights_exactly(first_run):
    _, report, _ = first_run
    sums = report["log_prob_sums"]
    assert sums["rollback"][0] == sums["snapshot"][0]
    assert sums["guide"][0] != sums["snapshot"][0], "the look-ahead must have moved the policy"


def test_replayed_steps_see_the_lookahead_batches(first_run):
    _, report, _ = first_run
    lookahead, guided = steps_in(report, "lookahead"), steps_in(report, "guided")
    assert sorted(lookahead) == sorted(guided) == list(range(FORK_STEP + 1, FORK_STEP + DELTA + 1))
    for step in lookahead:
        assert guided[step]["prompts"] == lookahead[step]["prompts"]
    real = [s["step"] for s in report["steps"] if s["phase"] != "lookahead"]
    assert real == [1, 2, 3, 4, 5, 6], "every real step runs exactly once"


def test_rollback_restores_weights_optimizer_lr_schedule_and_rng(first_run, actor_state):
    demo, _, _ = first_run
    kept = demo / "probe_rollback"
    restored, snapshot, guide = (actor_state.load(kept / name) for name in ("restored", "snapshot", "guide"))
    actor_state.assert_same(restored, snapshot)
    assert restored["lr_scheduler"]["last_epoch"] == FORK_STEP
    assert guide["lr_scheduler"]["last_epoch"] == FORK_STEP + DELTA
    assert not torch.equal(guide["rng"]["cpu"], snapshot["rng"]["cpu"]), "the look-ahead consumed the worker's RNG"
    first = next(iter(snapshot["optim"]["state"]))
    assert not torch.equal(guide["optim"]["state"][first]["exp_avg"], snapshot["optim"]["state"][first]["exp_avg"])
    assert not torch.equal(guide["model"][next(iter(guide["model"]))], snapshot["model"][next(iter(guide["model"]))])


def test_guide_rows_are_in_the_updated_batch_with_positive_advantage(first_run):
    _, report, log = first_run
    guided = steps_in(report, "guided").values()
    assert sum(s["guide_rows"] for s in guided) > 0, log[-3000:]
    assert all(a > 0 for s in guided for a in s["guide_advantages"])
    assert all(s["guide_rows"] == 0 for s in report["steps"] if s["phase"] != "guided")
    assert f"[npo] step={FORK_STEP} phase=lookahead fork" in log


def test_compute_counts_lookahead_steps_and_guide_sampling(first_run):
    demo, report, log = first_run
    compute = json.loads((demo / "checkpoints" / "npo" / "compute.json").read_text())
    assert compute["optimizer_steps"] == 6 + DELTA and compute["lookahead_steps"] == DELTA
    assert compute["guide_tokens"] > 0 and compute["rollout_tokens"] > 0
    assert f"[npo] step={FORK_STEP + 1} phase=guided" in log and "onpolicy_acc=" in log


def test_checkpoints_and_auto_resume_after_the_intervention(first_run, actor_state, run_probe):
    demo, _, _ = first_run
    checkpoints = demo / "checkpoints"
    assert (checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == "6"
    state = json.loads((checkpoints / "global_step_6" / "npo_state.json").read_text())
    assert state["phase"] == "idle"
    assert not list((checkpoints / "npo").glob("fork_*/snapshot")), "snapshot deleted after rollback"
    kept = sorted(p.parent.name for p in checkpoints.glob("global_step_*/actor"))
    assert kept == ["global_step_1", "global_step_2", "global_step_4", "global_step_6"], "snapshots use no slot"
    fork_state = json.loads((checkpoints / f"global_step_{FORK_STEP}" / "npo_state.json").read_text())
    assert fork_state["phase"] == "guided", "the fork-step checkpoint resumes inside the window"
    fork_checkpoint = actor_state.load(checkpoints / f"global_step_{FORK_STEP}" / "actor")
    actor_state.assert_same(fork_checkpoint, actor_state.load(demo / "probe_rollback" / "snapshot"))
    code, report, log = run_probe(demo, "resumed", "trainer.resume_mode=auto", "trainer.total_training_steps=8")
    assert code == 0, log[-4000:]
    assert report["resumed_at"] == 6 and report["resumed_phase"] == "idle"
    assert [s["step"] for s in report["steps"]] == [7, 8]


def test_killed_in_lookahead_resumes_from_the_snapshot(new_demo_dir, run_probe, tmp_path):
    demo = new_demo_dir(tmp_path)
    code, report, log = run_probe(demo, "killed", f"--die-at=lookahead:{FORK_STEP + 2}")
    assert code == 3 and report["died_at"] == ["lookahead", FORK_STEP + 2], log[-4000:]
    snapshot = demo / "checkpoints" / "npo" / f"fork_{FORK_STEP:06d}" / "snapshot"
    assert (snapshot / "data.pt").is_file()

    broken = tmp_path / "broken"
    shutil.copytree(demo, broken, symlinks=True)
    for weights in (broken / snapshot.relative_to(demo) / "actor").glob("model_*.pt"):
        weights.write_bytes(b"not a checkpoint")
    code, _, log = run_probe(broken, "corrupt", "trainer.resume_mode=auto")
    assert code != 0
    assert "could not load the fork snapshot" in log and str(broken / snapshot.relative_to(demo)) in log

    code, report, log = run_probe(demo, "resumed", "trainer.resume_mode=auto")
    assert code == 0, log[-4000:]
    assert report["resumed_at"] == FORK_STEP and report["resumed_phase"] == "lookahead"
    phases = [(s["step"], s["phase"]) for s in report["steps"]]
    idle = [(step, "idle") for step in (4, 5, 6)]
    assert phases == [(2, "lookahead"), (3, "lookahead"), (2, "guided"), (3, "guided"), *idle]


def test_a_lookahead_ending_at_an_epoch_boundary_loses_no_epoch(new_demo_dir, run_probe, tmp_path):
    """2 steps per epoch, 3 epochs, a look-ahead over the whole first epoch: all 6 real steps still run."""
    overrides = [
        "data.train_max_samples=8",
        "trainer.total_epochs=3",
        "trainer.total_training_steps=null",
        "trainer.save_freq=6",
        "npo.interventions=[{at_step:0,delta:2}]",
        "npo.guide_n=16",
    ]
    demo = new_demo_dir(tmp_path)
    code, report, log = run_probe(demo, "epochs", overrides=overrides)
    assert code == 0, log[-4000:]
    phases = [(s["step"], s["phase"]) for s in report["steps"]]
    assert phases == [(1, "lookahead"), (2, "lookahead"), (1, "guided"), (2, "guided")] + [
        (s, "idle") for s in (3, 4, 5, 6)
    ]
    steps = {(s["step"], s["phase"]): s["prompts"] for s in report["steps"]}
    assert steps[(1, "guided")] == steps[(1, "lookahead")] and steps[(2, "guided")] == steps[(2, "lookahead")]
    assert (demo / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "6"


def test_an_unsupported_verl_setting_fails_at_start_up_naming_it(new_demo_dir, run_probe, tmp_path):
    demo = new_demo_dir(tmp_path)
    code, report, log = run_probe(demo, "bypass", "algorithm.rollout_correction.bypass_mode=true")
    assert code != 0 and not report["steps"]
    assert "algorithm.rollout_correction.bypass_mode=true is not supported with guide injection" in log
