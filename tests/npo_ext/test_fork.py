"""The fork state machine, driven by a deterministic toy trainer that can be killed anywhere and resumed.

The toy mirrors how the verl glue uses the manager: ``advance`` at every step boundary, real checkpoints carry the
manager's state, look-ahead steps never write real checkpoints, and on start-up an in-flight fork resumes from its
snapshot. "Weights" are the list of (batch, guide) pairs trained on, so any lost, repeated or mis-guided step
shows up as a different final model.
"""

import json
import os
from pathlib import Path

import pytest
import torch

import npo_ext.fork as fork_module
from npo_ext.auto import AutoController
from npo_ext.config import AutoConfig, Intervention
from npo_ext.fork import ANCHOR, ForkInterrupted, ForkManager, Phase
from npo_ext.guide_pool import GuideSample, PromptGuides
from npo_ext.persist import NPOStateError, link_tree

TOTAL_STEPS = 12
SAVE_FREQ = 2
SCHEDULE = (Intervention(at_step=3, delta=2, window=3), Intervention(at_step=7, delta=1, window=2))


class Killed(Exception):
    pass


def batch_at(position):
    return f"b{position}"


PROMPTS_PER_BATCH = 10


def batch_prompts(position):
    """The toy's on-policy group accuracies of a batch's prompts: j/20 for prompt j, all below the 0.6 gate."""
    return [(f"p{position}_{j}", j / 20, f"payload {position}/{j}") for j in range(PROMPTS_PER_BATCH)]


def batch_reward(position):
    return 0.1 * (position % 3)


def batch_entropy(position):
    return 1.0 / (1 + position)


class ToyTrainer:
    """One process lifetime of a toy training run; with ``auto``, it feeds the controller as the verl trainer does."""

    def __init__(
        self, root: Path, kill=None, auto: AutoController | None = None, should_stop=None, distill=False, inject=True
    ):
        self.root = root
        self.should_stop = should_stop or (lambda: False)
        self.ckpt = root / "ckpt"
        self.kill = kill or (lambda event, trainer: False)
        self.auto = auto
        self.manager = ForkManager(
            () if auto else SCHEDULE, root / "npo", auto=auto, q_k=1, distill=distill, collect_guides=inject
        )
        self.teacher: int | None = None  # the policy (its step count) a distilled window's teacher holds
        self.weights: list[tuple[str, str | None]] = []
        self.position = 0
        self.completed = 0
        self.lookahead_steps = 0
        self.probed: list[int] = []

    # --- the ForkEngine protocol ---
    def _write(self, directory: Path, with_data=True):
        (directory / "actor").mkdir(parents=True, exist_ok=True)
        (directory / "actor" / "weights.json").write_text(json.dumps(self.weights))
        if with_data:
            (directory / "data.pt").write_text(json.dumps({"position": self.position}))

    def _read(self, directory: Path, with_data=True):
        self.weights = [tuple(w) for w in json.loads((directory / "actor" / "weights.json").read_text())]
        if with_data:
            self.position = json.loads((directory / "data.pt").read_text())["position"]

    def save_snapshot(self, directory, step):
        self._write(directory)

    def save_guide_checkpoint(self, directory, step):
        self._write(directory, with_data=False)

    def load_guide_checkpoint(self, directory):
        self._read(directory, with_data=False)

    def collect_guides(self, snapshot, first_batch, num_batches, guide_step, samples_dir):
        start = json.loads((snapshot / "data.pt").read_text())["position"]
        guide_policy = len(self.weights)
        for i in range(first_batch, first_batch + num_batches):
            if self.kill(("collect", i), self):
                raise Killed
            samples_dir.mkdir(parents=True, exist_ok=True)
            (samples_dir / f"batch_{i}.json").write_text(json.dumps({"policy": guide_policy}))
            key = batch_at(start + i)
            # the toy guide "solves" every other prompt; its answer encodes which policy wrote it
            samples = [GuideSample((guide_policy, start + i), 1.0, guide_step)] if (start + i) % 2 else []
            yield i, {key: PromptGuides(4, len(samples), samples)}

    # the toy's probe: θ_T solves the probe prompts numbered 8 and 9 of their batch and fails the rest; a candidate
    # θ_{T+Δ} solves those two and the failed ones numbered below SOLVES[Δ], so Q(Δ) = SOLVES[Δ] / 8 when the probe
    # set holds one whole batch; with V below, S = Q / V peaks at Δ = 2
    SOLVES = {1: 2, 2: 5, 3: 6}

    def probe_candidate(self, checkpoint, samples_dir, probe_set):
        self._read(checkpoint, with_data=False)
        delta = len(self.weights) - self.manager.state.intervention.at_step
        if self.kill(("probe", delta), self):
            raise Killed
        self.probed.append(delta)
        if samples_dir is not None:
            samples_dir.mkdir(parents=True, exist_ok=True)
            (samples_dir / "batch_0.json").write_text(json.dumps({"policy": len(self.weights)}))
        counts = []
        for mistake in torch.load(probe_set, weights_only=False):
            j = int(mistake.key.split("_")[1])
            solved_by_anchor = j >= 8
            solved = solved_by_anchor or (delta != ANCHOR and j < self.SOLVES[delta])
            counts.append(self.auto.config.probe_k if solved else 0)
        return counts

    def variance_cost(self, samples_dir):
        """1 + 0.1 * (steps between the sampling policy and the current one)²."""
        files = sorted(samples_dir.glob("batch_*.json"))
        policy = json.loads(files[0].read_text())["policy"]
        return 1.0 + 0.1 * (policy - len(self.weights)) ** 2

    def rollback(self, snapshot, step):
        if self.kill(("rollback", step), self):
            raise Killed
        self._read(snapshot)
        self.completed = step

    def load_teacher(self, directory):
        self.teacher = len(json.loads((directory / "actor" / "weights.json").read_text()))

    def drop_teacher(self):
        self.teacher = None

    def after_rollback(self):
        self.save_real_checkpoint()
        if self.kill(("after_rollback", self.completed), self):
            raise Killed

    # --- the training loop ---
    def save_real_checkpoint(self):
        folder = self.ckpt / f"global_step_{self.completed}"
        self._write(folder)
        (folder / "npo_state.json").write_text(json.dumps(self.manager.checkpoint_state()))
        if self.auto:
            torch.save(self.auto.state_dict(), folder / "auto.pt")
        (self.ckpt / "latest").write_text(str(self.completed))

    def resume(self):
        snapshot = self.manager.in_flight_snapshot()
        if snapshot is not None:
            self._read(snapshot)
            self.completed = self.manager.state.intervention.at_step
            return
        latest = self.ckpt / "latest"
        if latest.exists():
            self.completed = int(latest.read_text())
            folder = self.ckpt / f"global_step_{self.completed}"
            self._read(folder)
            self.manager.adopt_checkpoint_state(json.loads((folder / "npo_state.json").read_text()), folder)
            self.manager.resume_teacher(self)
            if self.auto:
                self.auto.load_state_dict(torch.load(folder / "auto.pt", weights_only=False))
        else:
            self.manager.adopt_checkpoint_state(None, self.ckpt)

    def run(self):
        self.resume()
        while self.completed < TOTAL_STEPS:
            self.manager.advance(self.completed, self, should_stop=self.should_stop)
            phase = self.manager.phase
            if self.kill(("step", phase, self.completed), self):
                raise Killed
            key = batch_at(self.position)
            lookahead = phase == Phase.LOOKAHEAD
            # as the verl trainer: the pool sees what the current policy generated (kept steps, and the first
            # look-ahead step, which θ_T generates); the trigger sees kept steps only
            if self.auto and (not lookahead or self.completed == self.manager.state.intervention.at_step):
                self.auto.observe_prompts(self.completed + 1, batch_prompts(self.position))
            if self.auto and not lookahead:
                self.auto.observe(batch_reward(self.position), batch_entropy(self.position))
            self.position += 1
            guides = self.manager.pool.guides(key) if phase == Phase.GUIDED else []
            guide = json.dumps(guides[0].response_ids) if guides else None
            if self.manager.distill and phase == Phase.GUIDED:  # the step was taught by the held teacher
                guide = json.dumps([guide, self.teacher])
            self.weights.append((key, guide))
            self.completed += 1
            if lookahead:
                self.lookahead_steps += 1
            elif self.completed % SAVE_FREQ == 0:
                self.save_real_checkpoint()
        return self.weights


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    trainer = ToyTrainer(tmp_path_factory.mktemp("reference"))
    return trainer.run(), trainer


def test_uninterrupted_run_applies_guides_only_in_windows(reference):
    weights, trainer = reference
    assert [key for key, _ in weights] == [batch_at(i) for i in range(TOTAL_STEPS)], "real steps see every batch once"
    guided = [i for i, (_, guide) in enumerate(weights) if guide is not None]
    # window 1 covers real steps 4..6 (positions 3..5), window 2 steps 8..9 (positions 7..8); odd positions solved
    assert guided == [3, 5, 7]
    # a guide was written by the near-future policy: it had trained T + delta steps
    assert json.loads(weights[3][1]) == [3 + 2, 3]
    assert json.loads(weights[7][1]) == [7 + 1, 7]
    assert trainer.lookahead_steps == 3
    assert trainer.manager.phase == Phase.IDLE
    assert not list((trainer.root / "npo").glob("fork_*/snapshot")), "snapshots are deleted after rollback"


def kill_once(point):
    """A kill callback that fires at the first event matching ``point``, and the list of events it fired at."""
    fired = []

    def kill(event, trainer):
        if not fired and point(event, trainer):
            fired.append(event)
            return True
        return False

    return kill, fired


KILL_POINTS = {
    "idle": lambda e, t: e == ("step", Phase.IDLE, 2),
    "lookahead": lambda e, t: e == ("step", Phase.LOOKAHEAD, 4),
    "collect_first_batch": lambda e, t: e == ("collect", 0),
    "collect_mid": lambda e, t: e == ("collect", 2),
    "rollback": lambda e, t: e == ("rollback", 3),
    "guided_first_step": lambda e, t: e == ("step", Phase.GUIDED, 3),
    "guided_mid_window": lambda e, t: e == ("step", Phase.GUIDED, 5),
    "second_lookahead": lambda e, t: e == ("step", Phase.LOOKAHEAD, 7),
    "second_guided": lambda e, t: e == ("step", Phase.GUIDED, 8),
    "after_all_windows": lambda e, t: e == ("step", Phase.IDLE, 10),
}


@pytest.mark.parametrize("kill_point", sorted(KILL_POINTS))
def test_killed_in_any_phase_resumes_to_the_same_model(tmp_path, reference, kill_point):
    expected, _ = reference
    kill, fired = kill_once(KILL_POINTS[kill_point])
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, kill=kill).run()
    assert fired
    resumed = ToyTrainer(tmp_path).run()
    assert resumed == expected


def test_resume_in_collect_continues_after_the_persisted_batches(tmp_path):
    calls = []

    class Recording(ToyTrainer):
        def collect_guides(self, snapshot, first_batch, num_batches, guide_step, samples_dir):
            calls.append((first_batch, num_batches))
            yield from super().collect_guides(snapshot, first_batch, num_batches, guide_step, samples_dir)

    with pytest.raises(Killed):
        Recording(tmp_path, kill=lambda e, t: e == ("collect", 2)).run()
    Recording(tmp_path).run()
    assert calls[:2] == [(0, 3), (2, 1)]


def stop_when(condition):
    """A stop request that appears once ``condition(trainer)`` holds and stays until the run stops."""
    holder = {}

    def should_stop():
        return condition(holder["trainer"])

    def make(root, **kwargs):
        holder["trainer"] = ToyTrainer(root, should_stop=should_stop, **kwargs)
        return holder["trainer"]

    return make


def test_a_stop_request_inside_a_collection_stops_after_the_persisted_batch_and_resumes_there(tmp_path, reference):
    expected, _ = reference
    collected = lambda t: (t.root / "npo" / "fork_000003" / "pool" / "batch_00000.json").exists()  # noqa: E731
    stopped = stop_when(collected)(tmp_path)
    with pytest.raises(ForkInterrupted, match=r"fork at step 3 \(collect: 1 of 3 window batches collected\)"):
        stopped.run()
    state = json.loads((tmp_path / "npo" / "state.json").read_text())
    assert (state["phase"], state["collected_batches"]) == ("collect", 1)
    assert ToyTrainer(tmp_path).run() == expected


def test_a_stop_request_between_probes_stops_after_the_persisted_candidate_and_resumes_there(tmp_path, auto_reference):
    expected, _ = auto_reference
    stopped = stop_when(lambda t: t.probed == [0, 1])(tmp_path, auto=auto_controller())
    with pytest.raises(ForkInterrupted, match=r"probe: 1 of 3 candidates probed"):
        stopped.run()
    resumed = ToyTrainer(tmp_path, auto=auto_controller())
    assert resumed.run() == expected
    assert resumed.probed[:2] == [2, 3], "the resumed fork probes only what was left"


def test_a_stop_request_after_the_last_window_batch_waits_for_the_step_boundary(tmp_path, reference):
    """Asked once the first fork's last batch is in, the fork's own checks let its rollback run (the trainer stops at
    the boundary); the toy has no boundary stop, so the run just goes on."""
    expected, _ = reference
    fork = tmp_path / "npo" / "fork_000003"
    last_batch_in = lambda t: (fork / "pool" / "batch_00002.json").exists()  # noqa: E731
    second_fork = tmp_path / "npo" / "fork_000007"
    trainer = stop_when(lambda t: last_batch_in(t) and not second_fork.exists())(tmp_path)
    assert trainer.run() == expected


def test_missing_snapshot_at_resume_fails_loudly_naming_the_path(tmp_path):
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, kill=lambda e, t: e == ("step", Phase.LOOKAHEAD, 4)).run()
    snapshot_actor = tmp_path / "npo" / "fork_000003" / "snapshot" / "actor"
    for f in snapshot_actor.iterdir():
        f.unlink()
    with pytest.raises(NPOStateError, match=str(snapshot_actor)):
        ToyTrainer(tmp_path).run()


def test_corrupt_run_state_fails_loudly_naming_the_path(tmp_path):
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, kill=lambda e, t: e == ("step", Phase.LOOKAHEAD, 4)).run()
    state = tmp_path / "npo" / "state.json"
    state.write_text('{"version": 1, "phase": "lookahead"')
    with pytest.raises(NPOStateError, match=f"corrupt.*{state}"):
        ToyTrainer(tmp_path).run()
    state.write_text('{"version": 1, "phase": "warp", "intervention": null, "collected_batches": 0}')
    with pytest.raises(NPOStateError, match="invalid"):
        ToyTrainer(tmp_path).run()


def test_empty_pool_is_a_logged_no_op(tmp_path, caplog):
    class Unsolved(ToyTrainer):
        def collect_guides(self, snapshot, first_batch, num_batches, guide_step, samples_dir):
            for i in range(first_batch, first_batch + num_batches):
                yield i, {f"k{i}": PromptGuides(4, 0, [])}

    weights = Unsolved(tmp_path).run()
    assert all(guide is None for _, guide in weights)
    assert "solved none of the window's prompts" in caplog.text


def test_advance_reports_events_and_timings(tmp_path):
    trainer = ToyTrainer(tmp_path)
    trainer.resume()
    manager = trainer.manager
    assert manager.advance(0, trainer) == {}
    trainer.completed = trainer.position = 3
    fork = manager.advance(3, trainer)
    assert fork["npo/event/fork"] == 1.0 and "npo/time/snapshot_s" in fork
    assert manager.phase == Phase.LOOKAHEAD
    assert manager.advance(4, trainer) == {}
    done = manager.advance(5, trainer)
    assert done["npo/event/rollback"] == 1.0
    assert done["npo/collect/prompts"] == 3.0 and done["npo/pool/guides"] == 2.0
    assert trainer.completed == 3 and manager.phase == Phase.GUIDED


def test_rollback_measures_v_of_the_window_guides_under_the_restored_policy(reference):
    _, trainer = reference
    # the first window's guides came from θ_5, the rolled-back policy is θ_3: V = 1 + 0.1 * 2²; the state of the
    # window carries it (checkpoints of the window resume with it) and IDLE forgets it
    manager = ToyTrainer(trainer.root).manager
    state = json.loads((trainer.ckpt / "global_step_4" / "npo_state.json").read_text())
    assert state["phase"] == "guided" and state["v"] == pytest.approx(1.4)
    assert manager.state.v is None
    assert not list((trainer.root / "npo").glob("fork_*/samples")), "V samples are deleted after the rollback"


# --- AutoNPO: a bootstrap fork at step 0 and a reward-stagnation fork at step 4, candidates Δ = 1, 2, 3 each time,
# Δ* = 2 by S = Q / V; the controller sees every kept step's reward, entropy and prompts ----------------------------


def auto_controller(**overrides) -> AutoController:
    settings = dict(
        bootstrap=True,
        max_interventions=2,
        delta_max=3,
        candidate_every=1,
        min_pool=0,
        window=2,
        cooldown=2,
        reward_slope_min=0.05,
        entropy_drop=1.0,
        entropy_floor=0.0,
    )
    config = AutoConfig(**{**settings, **overrides})
    return AutoController(config, gate=0.6, total_steps=TOTAL_STEPS, steps_per_epoch=0)


@pytest.fixture(scope="module")
def auto_reference(tmp_path_factory):
    trainer = ToyTrainer(tmp_path_factory.mktemp("auto"), auto=auto_controller())
    return trainer.run(), trainer


def test_auto_probes_theta_t_and_every_candidate_and_guides_with_the_argmax_of_s(auto_reference):
    weights, trainer = auto_reference
    assert trainer.probed == [0, 1, 2, 3] * 2, "θ_T first, then each candidate, at both forks"
    assert trainer.lookahead_steps == 6
    # Δ* = 2 both times: windows of 2 steps, guides written by θ_{T+2}; the second fork comes at the end of the first
    # window's cooldown, from reward stagnation
    guided = [i for i, (_, guide) in enumerate(weights) if guide is not None]
    assert guided == [1, 5]
    assert json.loads(weights[1][1]) == [2, 1] and json.loads(weights[5][1]) == [6, 5]
    assert [key for key, _ in weights] == [batch_at(i) for i in range(TOTAL_STEPS)]
    for fork in (trainer.root / "npo").glob("fork_*"):
        leftovers = [*fork.glob("candidate_*"), *fork.glob("probe*"), *fork.glob("controller_*")]
        assert not leftovers, "candidates, probes and controller copies are deleted"
    assert trainer.auto.interventions_done == 2 and trainer.auto.last_window_end == 6
    assert len(trainer.auto.pool) > PROMPTS_PER_BATCH


def test_auto_select_measures_q_on_the_probe_prompts_theta_t_fails(tmp_path):
    trainer = ToyTrainer(tmp_path, auto=auto_controller(max_interventions=1))
    trainer.resume()
    metrics = trainer.manager.advance(0, trainer)
    assert metrics["npo/auto/trigger/bootstrap"] == 0.0 and metrics["npo/event/fork"] == 1.0
    trainer.auto.observe_prompts(1, batch_prompts(0))  # the first look-ahead step, generated by θ_0
    for step in (1, 2):
        trainer.completed = trainer.position = step
        trainer.weights.append((batch_at(step - 1), None))
        assert "npo/time/guide_checkpoint_s" in trainer.manager.advance(step, trainer)
        assert (trainer.manager.candidate_dir(Intervention(0, 3, 0), step) / "actor").is_dir()
    trainer.completed = trainer.position = 3
    trainer.weights.append((batch_at(2), None))
    done = trainer.manager.advance(3, trainer)
    # 10 probe prompts, θ_0 solves 2: Q is measured on the other 8 (counting all 10 would give 0.7 at Δ = 2)
    assert done["npo/auto/probe_prompts_failed"] == 8.0
    assert done["npo/auto/candidate_2/q"] == 5 / 8 and done["npo/auto/candidate_2/v"] == pytest.approx(1.4)
    assert done["npo/auto/candidate_3/s"] == pytest.approx(0.75 / 1.9)
    assert done["npo/auto/delta_star"] == 2.0
    assert done["npo/signal/v"] == pytest.approx(1.4) and done["npo/event/rollback"] == 1.0
    assert trainer.manager.phase == Phase.GUIDED and trainer.manager.state.intervention == Intervention(0, 2, 2)


def kill_in_select(monkeypatch, moment):
    """Kill the run inside SELECT: right after its decision is persisted, or after Δ*'s weights were moved to the
    guide folder but before the other candidates are deleted (the gap that once made every later resume fail)."""
    fired = []
    persist = ForkManager._persist

    def persist_then_kill(self, state):
        persist(self, state)
        if moment == "decided" and not fired and state.phase == Phase.SELECT and state.chosen is not None:
            fired.append(moment)
            raise Killed

    rmtree = fork_module.shutil.rmtree

    def rmtree_or_kill(path, *args, **kwargs):
        if moment == "moved" and not fired and Path(path).name.startswith("candidate_"):
            fired.append(moment)
            raise Killed
        return rmtree(path, *args, **kwargs)

    monkeypatch.setattr(ForkManager, "_persist", persist_then_kill)
    monkeypatch.setattr(fork_module.shutil, "rmtree", rmtree_or_kill)
    return fired


AUTO_KILL_POINTS = {
    "idle_between_forks": lambda e, t: e == ("step", Phase.IDLE, 3),
    "lookahead": lambda e, t: e == ("step", Phase.LOOKAHEAD, 2),
    "probe_theta_t": lambda e, t: e == ("probe", 0),
    "probe_second_candidate": lambda e, t: e == ("probe", 2),
    "probe_last_candidate": lambda e, t: e == ("probe", 3),
    "collect": lambda e, t: e == ("collect", 1),
    "rollback": lambda e, t: e == ("rollback", 0),
    "after_rollback": lambda e, t: e == ("after_rollback", 0),
    "guided": lambda e, t: e == ("step", Phase.GUIDED, 1),
    "second_probe": lambda e, t: e == ("probe", 1) and t.manager.state.intervention.at_step == 4,
    "second_guided": lambda e, t: e == ("step", Phase.GUIDED, 5),
    "after": lambda e, t: e == ("step", Phase.IDLE, 9),
}


def assert_same_run(resumed: ToyTrainer, reference: ToyTrainer, expected_weights) -> None:
    assert resumed.weights == expected_weights, "no kept step lost, repeated or guided differently"
    assert resumed.auto.state_dict() == reference.auto.state_dict(), "the controller and its pool match"


@pytest.mark.parametrize("kill_point", sorted(AUTO_KILL_POINTS))
def test_auto_killed_in_any_phase_resumes_to_the_same_model_and_controller(tmp_path, auto_reference, kill_point):
    expected, reference = auto_reference
    kill, fired = kill_once(AUTO_KILL_POINTS[kill_point])
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, kill=kill, auto=auto_controller()).run()
    assert fired
    resumed = ToyTrainer(tmp_path, auto=auto_controller())
    resumed.run()
    assert_same_run(resumed, reference, expected)
    if kill_point == "probe_last_candidate":
        assert resumed.probed == [3, 0, 1, 2, 3], "a resumed probe skips the policies already probed"


@pytest.mark.parametrize("moment", ["decided", "moved"])
def test_auto_killed_inside_select_resumes_to_the_same_model_and_controller(
    tmp_path, auto_reference, monkeypatch, moment
):
    expected, reference = auto_reference
    fired = kill_in_select(monkeypatch, moment)
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, auto=auto_controller()).run()
    assert fired == [moment]
    state = json.loads((tmp_path / "npo" / "state.json").read_text())
    assert (state["phase"], state["chosen"]) == ("select", 2)
    resumed = ToyTrainer(tmp_path, auto=auto_controller())
    resumed.run()
    assert_same_run(resumed, reference, expected)
    assert resumed.probed[:4] == [0, 1, 2, 3] and len(resumed.probed) == 4, "the first fork is not probed again"


def test_a_killed_run_whose_controller_is_not_restored_differs(tmp_path, auto_reference, monkeypatch):
    """The comparison above can fail: with the controller's restore disabled, a run killed in a fork ends elsewhere."""
    _, reference = auto_reference
    kill, _ = kill_once(AUTO_KILL_POINTS["probe_second_candidate"])
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, kill=kill, auto=auto_controller()).run()
    monkeypatch.setattr(AutoController, "load_state_dict", lambda self, state: None)
    resumed = ToyTrainer(tmp_path, auto=auto_controller())
    resumed.run()
    assert resumed.auto.state_dict() != reference.auto.state_dict()


class Hopeless(ToyTrainer):
    SOLVES = {1: 0, 2: 0, 3: 0}


def test_auto_without_a_useful_candidate_rolls_back_and_runs_on(tmp_path):
    trainer = Hopeless(tmp_path, auto=auto_controller(max_interventions=1))
    weights = trainer.run()
    assert [key for key, _ in weights] == [batch_at(i) for i in range(TOTAL_STEPS)]
    assert all(guide is None for _, guide in weights)
    assert trainer.lookahead_steps == 3 and trainer.manager.phase == Phase.IDLE
    assert trainer.auto.last_window_end == 0, "the cooldown runs from the fork"
    assert not list((tmp_path / "npo").glob("fork_*/snapshot"))


def test_a_fork_without_a_usable_delta_keeps_the_controllers_count_across_a_kill(tmp_path, tmp_path_factory):
    reference = Hopeless(tmp_path_factory.mktemp("hopeless"), auto=auto_controller(max_interventions=1))
    expected = reference.run()
    kill, fired = kill_once(lambda e, t: e == ("after_rollback", 0))
    with pytest.raises(Killed):
        Hopeless(tmp_path, kill=kill, auto=auto_controller(max_interventions=1)).run()
    resumed = Hopeless(tmp_path, auto=auto_controller(max_interventions=1))
    resumed.run()
    assert_same_run(resumed, reference, expected)
    assert resumed.lookahead_steps == 0 and resumed.probed == [], "the fork is not run again"
    assert (resumed.auto.interventions_done, resumed.auto.last_window_end) == (1, 0)


def test_a_kill_before_the_probe_phase_is_persisted_resumes_with_the_probe_set(tmp_path, auto_reference, monkeypatch):
    """The probe set and the controller after the look-ahead are written before the phase says PROBE."""
    expected, reference = auto_reference
    fired = []
    persist = ForkManager._persist

    def kill_before_probe(self, state):
        if not fired and state.phase == Phase.PROBE and not state.probed:
            assert self.probe_set_path(state.intervention).is_file()
            fired.append(state)
            raise Killed
        persist(self, state)

    monkeypatch.setattr(ForkManager, "_persist", kill_before_probe)
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, auto=auto_controller()).run()
    monkeypatch.setattr(ForkManager, "_persist", persist)
    resumed = ToyTrainer(tmp_path, auto=auto_controller())
    resumed.run()
    assert_same_run(resumed, reference, expected)


def test_a_linked_tree_shares_the_files_and_falls_back_when_linking_fails(tmp_path, monkeypatch):
    source = tmp_path / "checkpoint"
    (source / "huggingface").mkdir(parents=True)
    (source / "model.pt").write_bytes(b"w")
    (source / "huggingface" / "config.json").write_text("{}")
    assert link_tree(source, tmp_path / "linked")
    assert (tmp_path / "linked" / "model.pt").stat().st_ino == (source / "model.pt").stat().st_ino
    assert (tmp_path / "linked" / "huggingface" / "config.json").read_text() == "{}"

    def no_links(*args):
        raise OSError("Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    assert not link_tree(source, tmp_path / "elsewhere") and not (tmp_path / "elsewhere").exists()


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    trainer = ToyTrainer(tmp_path_factory.mktemp("distilled"), distill=True)
    return trainer.run(), trainer


def test_a_distilled_window_is_taught_by_the_guide_checkpoint_and_the_teacher_goes_with_the_window(distilled):
    weights, trainer = distilled
    taught = {i: json.loads(guide) for i, (_, guide) in enumerate(weights) if guide is not None}
    assert sorted(taught) == [3, 4, 5, 7, 8], "every guided step, and only those"
    assert {i: teacher for i, (_, teacher) in taught.items()} == {3: 5, 4: 5, 5: 5, 7: 8, 8: 8}, "θ_{T+Δ}"
    assert json.loads(taught[3][0]) == [5, 3] and taught[4][0] is None, "guides still injected"
    assert trainer.teacher is None
    assert not list((trainer.root / "npo").glob("fork_*/teacher")) and not list((trainer.root / "npo").glob("*/guide"))


@pytest.mark.parametrize("kill_point", ["rollback", "guided_first_step", "guided_mid_window", "second_guided"])
def test_a_distilled_run_killed_around_its_window_resumes_to_the_same_model(tmp_path, distilled, kill_point):
    expected, _ = distilled
    kill, fired = kill_once(KILL_POINTS[kill_point])
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, kill=kill, distill=True).run()
    assert fired
    assert ToyTrainer(tmp_path, distill=True).run() == expected


def test_distillation_alone_samples_no_guides_and_still_teaches_every_window_step(tmp_path, distilled):
    class NoCollection(ToyTrainer):
        def collect_guides(self, *args):
            raise AssertionError("distillation alone samples no guides")

    weights = NoCollection(tmp_path, distill=True, inject=False).run()
    taught = {i: json.loads(guide) for i, (_, guide) in enumerate(weights) if guide is not None}
    assert taught == {3: [None, 5], 4: [None, 5], 5: [None, 5], 7: [None, 8], 8: [None, 8]}


def test_a_missing_teacher_at_resume_inside_its_window_fails_naming_the_path(tmp_path):
    with pytest.raises(Killed):
        ToyTrainer(tmp_path, kill=lambda e, t: e == ("step", Phase.GUIDED, 5), distill=True).run()
    teacher = tmp_path / "npo" / "fork_000003" / "teacher" / "actor"
    for f in teacher.iterdir():
        f.unlink()
    with pytest.raises(NPOStateError, match="distillation teacher"):
        ToyTrainer(tmp_path, distill=True).run()
