"""The fork state machine, driven by a deterministic toy trainer that can be killed anywhere and resumed.

The toy mirrors how the verl glue uses the manager: ``advance`` at every step boundary, real checkpoints carry the
manager's state, look-ahead steps never write real checkpoints, and on start-up an in-flight fork resumes from its
snapshot. "Weights" are the list of (batch, guide) pairs trained on, so any lost, repeated or mis-guided step
shows up as a different final model.
"""

import json
from pathlib import Path

import pytest

from npo_ext.config import Intervention
from npo_ext.fork import ForkManager, Phase
from npo_ext.guide_pool import GuideSample, PromptGuides
from npo_ext.persist import NPOStateError

TOTAL_STEPS = 12
SAVE_FREQ = 2
SCHEDULE = (Intervention(at_step=3, delta=2, window=3), Intervention(at_step=7, delta=1, window=2))


class Killed(Exception):
    pass


def batch_at(position):
    return f"b{position}"


class ToyTrainer:
    """One process lifetime of a toy training run."""

    def __init__(self, root: Path, kill=None):
        self.root = root
        self.ckpt = root / "ckpt"
        self.kill = kill or (lambda event, trainer: False)
        self.manager = ForkManager(SCHEDULE, root / "npo")
        self.weights: list[tuple[str, str | None]] = []
        self.position = 0
        self.completed = 0
        self.lookahead_steps = 0

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

    def collect_guides(self, snapshot, first_batch, num_batches, guide_step):
        start = json.loads((snapshot / "data.pt").read_text())["position"]
        guide_policy = len(self.weights)
        for i in range(first_batch, first_batch + num_batches):
            if self.kill(("collect", i), self):
                raise Killed
            key = batch_at(start + i)
            # the toy guide "solves" every other prompt; its answer encodes which policy wrote it
            samples = [GuideSample((guide_policy, start + i), 1.0, guide_step)] if (start + i) % 2 else []
            yield i, {key: PromptGuides(4, len(samples), samples)}

    def rollback(self, snapshot, step):
        if self.kill(("rollback", step), self):
            raise Killed
        self._read(snapshot)
        self.completed = step

    def on_guided_start(self):
        self.save_real_checkpoint()

    # --- the training loop ---
    def save_real_checkpoint(self):
        folder = self.ckpt / f"global_step_{self.completed}"
        self._write(folder)
        (folder / "npo_state.json").write_text(json.dumps(self.manager.checkpoint_state()))
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
        else:
            self.manager.adopt_checkpoint_state(None, self.ckpt)

    def run(self):
        self.resume()
        while self.completed < TOTAL_STEPS:
            self.manager.advance(self.completed, self)
            phase = self.manager.phase
            if self.kill(("step", phase, self.completed), self):
                raise Killed
            key = batch_at(self.position)
            self.position += 1
            guides = self.manager.pool.guides(key) if phase == Phase.GUIDED else []
            self.weights.append((key, json.dumps(guides[0].response_ids) if guides else None))
            self.completed += 1
            if phase == Phase.LOOKAHEAD:
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
    fired = []

    def kill_once(event, trainer):
        if not fired and KILL_POINTS[kill_point](event, trainer):
            fired.append(event)
            return True
        return False

    with pytest.raises(Killed):
        ToyTrainer(tmp_path, kill=kill_once).run()
    assert fired
    resumed = ToyTrainer(tmp_path).run()
    assert resumed == expected


def test_resume_in_collect_continues_after_the_persisted_batches(tmp_path):
    calls = []

    class Recording(ToyTrainer):
        def collect_guides(self, snapshot, first_batch, num_batches, guide_step):
            calls.append((first_batch, num_batches))
            yield from super().collect_guides(snapshot, first_batch, num_batches, guide_step)

    with pytest.raises(Killed):
        Recording(tmp_path, kill=lambda e, t: e == ("collect", 2)).run()
    Recording(tmp_path).run()
    assert calls[:2] == [(0, 3), (2, 1)]


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
        def collect_guides(self, snapshot, first_batch, num_batches, guide_step):
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
