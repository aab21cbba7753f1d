"""AutoNPO through Ray, verl's real fit(), the FSDP2 actor on CPU and real generation: it triggers, probes θ_T and two
candidates, picks Δ* = argmax S, rolls back and injects; one run killed in every phase in turn ends with the
uninterrupted run's steps, controller and mistake pool.

The demo's AutoNPO settings (recipes/npo/config/cpu_demo.yaml) bootstrap at step 0 with candidates Δ = 1 and 2.
"""

import json
import math
import re
import sys

import pytest
import torch

pytestmark = pytest.mark.slow

OVERRIDES = [
    "npo.mode=auto",
    "npo.auto.max_interventions=1",
    "npo.guide_n=32",
    "npo.auto.probe_k=4",
    # verl seeds every worker's RNGs: the uninterrupted run and the killed one sample alike, so their controllers match
    "actor_rollout_ref.actor.fsdp_config.full_determinism=true",
    "trainer.total_training_steps=5",
    "trainer.save_freq=2",
]


@pytest.fixture(scope="module")
def auto_run(new_demo_dir, probe, tmp_path_factory):
    demo = new_demo_dir(tmp_path_factory.mktemp("auto"))
    code, report, log = probe(sys.executable, demo, "auto", [*OVERRIDES, "--check-topk"], timeout=600)
    assert code == 0, log[-4000:]
    return demo, report, log


def merged(report) -> dict:
    out: dict = {}
    for metrics in report["metrics"]:
        out.update(metrics)
    return out


def test_bootstrap_probes_two_candidates_and_guides_with_the_argmax_of_s(auto_run):
    _, report, _ = auto_run
    metrics = merged(report)
    assert "npo/auto/trigger/bootstrap" in metrics
    assert report["probed"][:3] == ["snapshot", "candidate_0001", "candidate_0002"], "θ_T, then each candidate"
    table = {d: {k: metrics[f"npo/auto/candidate_{d}/{k}"] for k in "qvs"} for d in (1, 2)}
    for row in table.values():
        assert all(math.isfinite(x) for x in row.values()) and row["v"] > 0
        assert row["s"] == pytest.approx(row["q"] / row["v"])
    chosen = int(metrics["npo/auto/delta_star"])
    assert table[chosen]["s"] == max(row["s"] for row in table.values()), table
    phases = [(s["step"], s["phase"]) for s in report["steps"]]
    # one look-ahead of Δ_max = 2 steps, then the 5 kept steps, the first Δ* of them guided
    kept = [(step, "guided" if step <= chosen else "idle") for step in range(1, 6)]
    assert phases == [(1, "lookahead"), (2, "lookahead"), *kept]
    assert sum(s["guide_rows"] for s in report["steps"] if s["phase"] == "guided") > 0, "guides were injected"


def test_v_is_measured_at_rollback_and_s_in_the_window(auto_run):
    _, report, _ = auto_run
    rollback = next(m for m in report["metrics"] if "npo/event/rollback" in m)
    assert rollback["npo/signal/v"] > 0 and math.isfinite(rollback["npo/signal/v"])
    guided_s = [m["npo/signal/s"] for m in report["metrics"] if "npo/signal/s" in m]
    assert guided_s and all(math.isfinite(s) for s in guided_s)


def test_topk_forward_agrees_with_verls_log_probs_and_v_is_one_under_the_sampler(auto_run):
    _, report, _ = auto_run
    assert report["topk_alignment"] < 5e-3, "top-k forward shifted or scaled differently from verl's π_old"
    assert report["self_v"] and all(v == pytest.approx(1.0, abs=1e-4) for v in report["self_v"])


def test_candidates_are_deleted_and_the_pool_is_saved_with_checkpoints(auto_run):
    demo, _, _ = auto_run
    fork = demo / "checkpoints" / "npo" / "fork_000000"
    assert not list(fork.glob("candidate_*")) and not list(fork.glob("probe*")) and not (fork / "samples").exists()
    assert (demo / "checkpoints" / "global_step_4" / "npo_auto.pt").is_file()


def test_logger_steps_are_distinct_and_increasing(auto_run):
    _, _, log = auto_run
    steps = [int(s) for s in re.findall(r"\bstep:(\d+) - ", log)]
    assert steps == sorted(set(steps)) and len(steps) == 7, steps  # 5 kept + 2 look-ahead steps


def controller(demo, step: int) -> dict:
    """The AutoNPO controller saved with the real checkpoint of ``step``: counters, signal windows and the mistake
    pool's entries (key, accuracy, first and last failing step) and evictions."""
    state = torch.load(demo / "checkpoints" / f"global_step_{step}" / "npo_auto.pt", weights_only=False)
    entries = sorted((e["key"], e["acc"], e["first_step"], e["last_step"]) for e in state["pool"]["entries"])
    return {**{k: v for k, v in state.items() if k != "pool"}, "entries": entries, "evicted": state["pool"]["evicted"]}


# one run killed once in every AutoNPO phase, each kill resumed by the next process: (phase, --die-at, resumed in)
KILLS = [
    ("lookahead", "lookahead:2", None),
    ("probe", "probe:2", "lookahead"),  # θ_T and Δ = 1 probed, killed before Δ = 2
    ("select", "select:0", "probe"),  # killed right after the decision is persisted, before the weights move
    ("collect", "collect:0", "select"),
    ("guided", "guided:1", "collect"),
    ("idle", "idle:4", "guided"),
    ("done", None, None),
]


def test_killed_in_every_phase_resumes_to_the_uninterrupted_run(auto_run, new_demo_dir, probe, tmp_path):
    reference, reference_report, _ = auto_run
    demo = new_demo_dir(tmp_path)
    kept_steps, probed = [], []
    for phase, die_at, resumed_in in KILLS:
        args = [
            *OVERRIDES,
            *([f"--die-at={die_at}"] if die_at else []),
            *(["trainer.resume_mode=auto"] if phase != "lookahead" else []),
        ]
        code, report, log = probe(sys.executable, demo, phase, args, timeout=600)
        assert code == (3 if die_at else 0), log[-4000:]
        if die_at:
            where, index = die_at.split(":")
            assert report["died_at"] == [where, int(index)]
        if resumed_in:  # the last process resumes from step 2's checkpoint: guided or idle, as Δ* falls
            assert report["resumed_phase"] == resumed_in, (phase, report.get("resumed_phase"))
        probed += report["probed"]
        kept_steps += [s["step"] for s in report["steps"] if s["phase"] != "lookahead"]
        if phase == "probe":
            state = json.loads((demo / "checkpoints" / "npo" / "state.json").read_text())
            assert state["phase"] == "probe" and [d for d, _ in state["probed"]] == [0, 1]
    assert probed == ["snapshot", "candidate_0001", "candidate_0002"], "no policy probed twice"
    expected_steps = [s["step"] for s in reference_report["steps"] if s["phase"] != "lookahead"]
    assert sorted(set(kept_steps)) == expected_steps and kept_steps[-1] == 5
    # every kept step of the final trajectory ran after the last resume point of its phase: the ones a kill cut short
    # were redone from the checkpoint before them, and none is missing
    for step in (2, 4):
        assert controller(demo, step) == controller(reference, step), f"controller and pool at step {step}"
