"""Near-future distillation (npo.distill) through Ray, verl's real fit() and the FSDP2 actor on CPU: the teacher's
log-probs are θ_{T+Δ}'s, the KL term is in the update only inside the window, and a kill inside the window resumes
with the same teacher."""

import json
import sys

import pytest

pytestmark = pytest.mark.slow

FORK_STEP, DELTA = 1, 2
GUIDED_STEPS = [FORK_STEP + 1, FORK_STEP + DELTA]
OVERRIDES = [
    "trainer.total_training_steps=5",
    "trainer.save_freq=2",
    f"npo.interventions=[{{at_step:{FORK_STEP},delta:{DELTA}}}]",
    "npo.guide_n=16",
    "npo.distill.enable=true",
    "npo.distill.coef=1.0",
    "npo.distill.coef_end=0.5",
]


def by_step(report):
    real = [s for s in report["steps"] if s["phase"] != "lookahead"]
    kept = [m for s, m in zip(report["steps"], report["metrics"], strict=True) if s["phase"] != "lookahead"]
    return {s["step"]: m for s, m in zip(real, kept, strict=True)}


@pytest.fixture(scope="module")
def killed_and_resumed(new_demo_dir, probe, tmp_path_factory):
    """Killed in the second guided step's update (after its teacher forward), then resumed from the checkpoint the
    first guided step wrote."""
    demo = new_demo_dir(tmp_path_factory.mktemp("distill"))
    die = f"--die-at=guided:{GUIDED_STEPS[1]}"
    code, killed, log = probe(sys.executable, demo, "killed", [*OVERRIDES, die], timeout=600)
    assert code == 3 and killed["died_at"] == ["guided", GUIDED_STEPS[1]], log[-4000:]
    killed["log"] = log
    code, resumed, log = probe(sys.executable, demo, "resumed", [*OVERRIDES, "trainer.resume_mode=auto"], timeout=600)
    assert code == 0, log[-4000:]
    return demo, killed, resumed


def test_the_teachers_log_probs_are_the_near_future_policys(killed_and_resumed):
    _, killed, _ = killed_and_resumed
    check = killed["teacher_check"]  # first guided step: θ_{T+Δ} loaded into the actor vs the teacher forward
    assert check["vs_guide"] < 1e-5, check
    assert check["vs_current"] > 1e-3, "the teacher is not the current policy θ_T"


def test_the_kl_term_is_in_the_update_only_inside_the_window(killed_and_resumed):
    _, killed, resumed = killed_and_resumed
    first = by_step(killed)[GUIDED_STEPS[0]]
    assert first["actor/npo_distill_coef"] == 1.0 and first["actor/npo_distill_kl"] > 0
    assert first["npo/distill/kl_old_to_teacher"] > 0 and first["npo/distill/teacher_host_gib"] > 0
    summary = next(line for line in killed["log"].splitlines() if f"[npo] step={GUIDED_STEPS[0]} phase=guided" in line)
    assert "teacher_kl=" in summary and "distill_kl=" in summary, summary
    after = by_step(resumed)
    assert after[GUIDED_STEPS[1]]["actor/npo_distill_coef"] == 0.5, "the schedule's last step"
    for step in (FORK_STEP, *range(GUIDED_STEPS[1] + 1, 6)):
        metrics = {**by_step(killed), **after}[step]
        assert not [k for k in metrics if "distill" in k], (step, metrics)


def test_a_kill_inside_the_window_resumes_with_the_same_teacher(killed_and_resumed):
    demo, killed, resumed = killed_and_resumed
    assert resumed["resumed_at"] == GUIDED_STEPS[0] and resumed["resumed_phase"] == "guided"
    assert [s["step"] for s in resumed["steps"]] == [GUIDED_STEPS[1], 4, 5]
    # the resumed step repeats the killed one: same rollouts, same θ_T, so the same KL to the same teacher
    again = by_step(resumed)[GUIDED_STEPS[1]]["npo/distill/kl_old_to_teacher"]
    assert again == pytest.approx(killed["died_with_metrics"]["npo/distill/kl_old_to_teacher"], rel=1e-5)
    npo_dir = demo / "checkpoints" / "npo"
    assert not list(npo_dir.glob("fork_*/teacher")) and not list(npo_dir.glob("fork_*/guide")), "freed after the window"
    state = json.loads((demo / "checkpoints" / "global_step_4" / "npo_state.json").read_text())
    assert state["phase"] == "idle"
