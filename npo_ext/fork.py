"""The fork manager: an explicit, persisted state machine for one NPO intervention at a time.

    manual: IDLE --fork at T--> LOOKAHEAD(T, Δ) --Δ steps--> COLLECT --W batches--> ROLLBACK --> GUIDED(W) --> IDLE
    auto:   IDLE --trigger at T--> LOOKAHEAD(T, Δ_max; a candidate θ_{T+Δ} every c steps) --> PROBE (each candidate)
            --> SELECT (Δ* = argmax S) --> COLLECT from θ_{T+Δ*} --> ROLLBACK --> GUIDED(W) --> IDLE
            (no usable Δ*: SELECT --> ROLLBACK --> IDLE, the look-ahead is thrown away)

The manager decides *when* to act and *what* to persist; a :class:`ForkEngine` (the trainer glue) does the
work: snapshots, guide sampling, probing, rollback. Every transition is written atomically before the next side
effect, so a run killed in any phase resumes in that phase:

* LOOKAHEAD / PROBE / SELECT / COLLECT / ROLLBACK resume from the fork snapshot (θ_T and the data position at T).
  The look-ahead is re-run (its steps are throw-away); probing resumes after the last probed candidate; a collection
  resumes after the last persisted batch, with the guide checkpoint θ_{T+Δ} reloaded; SELECT and a rollback are
  simply re-done.
* GUIDED and IDLE resume from verl's latest real checkpoint, which carries the manager state of its own step
  (:meth:`ForkManager.checkpoint_state`). With ``checkpoint_at_rollback`` a real checkpoint is written at T right
  after rollback, so no real step is lost or repeated.

Layout under ``state_dir``::

    state.json                       run-level phase (what is in flight)
    fork_<T>/snapshot/{actor/,data.pt}
    fork_<T>/candidate_<Δ>/actor/    auto: θ_{T+Δ} for each candidate Δ, deleted at SELECT
    fork_<T>/probe_<Δ>/              auto: the candidate's probe samples, deleted at SELECT
    fork_<T>/probe_set.pt            auto: the probe prompts drawn from the mistake pool, deleted at SELECT
    fork_<T>/guide/actor/            θ_{T+Δ}, kept until the rollback is done
    fork_<T>/samples/                every sampled guide response (correct or not) with the guide's top-k log-probs,
                                     for V; deleted after the rollback measured it
    fork_<T>/lookahead/batch_<i>.json  what the look-ahead's rollout saw of window batch i, when a collection option
                                     uses it (npo_ext.lookahead_reuse); deleted after the rollback
    fork_<T>/pool/batch_<i>.json     guides for window batch i (kept: checkpoints of the window refer to them)
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from npo_ext.auto import AutoController
from npo_ext.config import Intervention
from npo_ext.delta_selection import Candidate, select_delta
from npo_ext.guide_pool import GuidePool, PromptGuides
from npo_ext.persist import NPOStateError, atomic_write_json, read_json


class Phase(str, Enum):
    """Declaration order fixes the logged ``npo/phase`` codes (0..6): AutoNPO's phases come last."""

    IDLE = "idle"
    LOOKAHEAD = "lookahead"
    COLLECT = "collect"
    ROLLBACK = "rollback"
    GUIDED = "guided"
    PROBE = "probe"
    SELECT = "select"


IN_FLIGHT = (Phase.LOOKAHEAD, Phase.PROBE, Phase.SELECT, Phase.COLLECT, Phase.ROLLBACK)
STATE_VERSION = 2
logger = logging.getLogger(__name__)


class ForkInterrupted(Exception):
    """A stop was requested inside a long phase (between two collected batches or two probed candidates).

    Raised only right after the manager persisted its progress, so the run resumes the fork exactly there: a
    preemptible job need not wait for a whole collection (tens of minutes at scale) before it can stop.
    """

    def __init__(self, state: ForkState) -> None:
        iv = state.intervention
        done = state.collected_batches if state.phase == Phase.COLLECT else len(state.probed)
        total = iv.window if state.phase == Phase.COLLECT else len(state.candidates)
        unit = "window batches collected" if state.phase == Phase.COLLECT else "candidates probed"
        where = f"{state.phase.value}: {done} of {total} {unit}"
        super().__init__(f"stop requested in the fork at step {iv.at_step} ({where})")
        self.state = state


@dataclass(frozen=True)
class ForkState:
    """Everything needed to resume: the phase, the intervention in progress, collection and probing progress.

    ``candidates`` are AutoNPO's look-ahead distances (empty for a manual intervention), ``probed`` the Q measured so
    far for each, ``v`` the variance cost of the window's guides under the rolled-back policy (None until measured).
    """

    phase: Phase = Phase.IDLE
    intervention: Intervention | None = None
    collected_batches: int = 0
    candidates: tuple[int, ...] = ()
    probed: tuple[tuple[int, float], ...] = ()
    v: float | None = None

    def to_dict(self) -> dict[str, Any]:
        iv = self.intervention
        return {
            "version": STATE_VERSION,
            "phase": self.phase.value,
            "intervention": None if iv is None else {"at_step": iv.at_step, "delta": iv.delta, "window": iv.window},
            "collected_batches": self.collected_batches,
            "candidates": list(self.candidates),
            "probed": [list(p) for p in self.probed],
            "v": self.v,
        }

    @classmethod
    def from_dict(cls, raw: Any, source: Path) -> ForkState:
        try:
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported state version {raw.get('version')!r}")
            phase = Phase(raw["phase"])
            iv = raw["intervention"]
            intervention = None if iv is None else Intervention(int(iv["at_step"]), int(iv["delta"]), int(iv["window"]))
            if (intervention is None) != (phase == Phase.IDLE):
                raise ValueError(f"phase {phase.value} inconsistent with intervention {iv!r}")
            candidates = tuple(int(d) for d in raw["candidates"])
            probed = tuple((int(d), float(q)) for d, q in raw["probed"])
            v = None if raw["v"] is None else float(raw["v"])
            return cls(phase, intervention, int(raw["collected_batches"]), candidates, probed, v)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise NPOStateError(f"NPO state is invalid ({e}): {source}") from e


class ForkEngine(Protocol):
    """What the trainer glue must provide. Steps are counted as completed optimizer steps."""

    def save_snapshot(self, directory: Path, step: int) -> None:
        """Save θ_step (weights, optimizer, LR scheduler, RNG) and the data position into ``directory``."""

    def save_guide_checkpoint(self, directory: Path, step: int) -> None:
        """Save the current (near-future) weights, so a collection can resume after a crash."""

    def load_guide_checkpoint(self, directory: Path) -> None:
        """Load the near-future weights saved by :meth:`save_guide_checkpoint` into actor and rollout."""

    def collect_guides(
        self, snapshot: Path, first_batch: int, num_batches: int, guide_step: int, samples_dir: Path
    ) -> Iterator[tuple[int, dict[str, PromptGuides]]]:
        """Sample guides for window batches ``first_batch..first_batch+num_batches-1`` (counted from the fork's
        data position), yielding ``(batch_index, {prompt_key: guides})`` as each batch finishes. What V needs of the
        sampled responses (all of them, correct or not) goes to ``samples_dir``."""

    def probe_candidate(self, checkpoint: Path, samples_dir: Path, probe_set: Path) -> float:
        """AutoNPO: load the candidate weights, sample the probe prompts, store what V needs; returns Q. The probe
        prompts are drawn once per fork and frozen in ``probe_set``, so every candidate (and a resumed probe) sees
        the same prompts."""

    def variance_cost(self, samples_dir: Path) -> float:
        """V of the responses stored in ``samples_dir`` under the actor's current weights (NaN when there are none)."""

    def rollback(self, snapshot: Path, step: int) -> None:
        """Restore θ_step and the data position from ``snapshot``, reset the step counter, re-sync rollout weights."""

    def on_guided_start(self) -> None:
        """Called after rollback with the manager already in GUIDED (e.g. to write a real checkpoint)."""


class ForkManager:
    """Drives interventions from a fixed schedule, or from an AutoNPO controller; call :meth:`advance` at every step
    boundary."""

    def __init__(
        self,
        interventions: tuple[Intervention, ...],
        state_dir: str | Path,
        auto: AutoController | None = None,
        guided_window: int = 0,
    ) -> None:
        self.interventions = interventions
        self.auto = auto
        self.guided_window = guided_window  # auto: guided steps after rollback (0: as many as Δ*)
        self.state_dir = Path(state_dir)
        self.state = ForkState()
        self.pool = GuidePool()
        self._guide_weights_live = False

    # --- paths -------------------------------------------------------------------------------------------------

    @property
    def run_state_path(self) -> Path:
        return self.state_dir / "state.json"

    def fork_dir(self, iv: Intervention) -> Path:
        return self.state_dir / f"fork_{iv.at_step:06d}"

    def snapshot_dir(self, iv: Intervention) -> Path:
        return self.fork_dir(iv) / "snapshot"

    def guide_dir(self, iv: Intervention) -> Path:
        return self.fork_dir(iv) / "guide"

    def pool_dir(self, iv: Intervention) -> Path:
        return self.fork_dir(iv) / "pool"

    def samples_dir(self, iv: Intervention) -> Path:
        return self.fork_dir(iv) / "samples"

    def lookahead_dir(self, iv: Intervention) -> Path:
        return self.fork_dir(iv) / "lookahead"

    def candidate_dir(self, iv: Intervention, delta: int) -> Path:
        return self.fork_dir(iv) / f"candidate_{delta:04d}"

    def probe_dir(self, iv: Intervention, delta: int) -> Path:
        return self.fork_dir(iv) / f"probe_{delta:04d}"

    def probe_set_path(self, iv: Intervention) -> Path:
        return self.fork_dir(iv) / "probe_set.pt"

    # --- queries -----------------------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.state.phase

    def due(self, completed: int) -> Intervention | None:
        """The scheduled intervention that forks at ``completed`` steps, if any."""
        return next((iv for iv in self.interventions if iv.at_step == completed), None)

    # --- persistence and resume --------------------------------------------------------------------------------

    def _persist(self, state: ForkState) -> None:
        atomic_write_json(self.run_state_path, state.to_dict())
        self.state = state

    def checkpoint_state(self) -> dict[str, Any]:
        """The state to store inside a real checkpoint of the current step."""
        return self.state.to_dict()

    def in_flight_snapshot(self) -> Path | None:
        """On start-up: the snapshot to resume from if a fork was in flight, else None (use verl's checkpoint).

        Raises NPOStateError naming the path when the state or the snapshot it needs is missing or corrupt.
        """
        if not self.run_state_path.exists():
            return None
        state = ForkState.from_dict(read_json(self.run_state_path, "NPO run state"), self.run_state_path)
        if state.phase not in IN_FLIGHT:
            return None
        iv = state.intervention
        snapshot = self.snapshot_dir(iv)
        _require_checkpoint(snapshot, "fork snapshot")
        if state.phase == Phase.COLLECT:
            _require_checkpoint(self.guide_dir(iv), "guide checkpoint", needs_data=False)
        if state.phase == Phase.PROBE:
            probed = dict(state.probed)
            for delta in (d for d in state.candidates if d not in probed):
                _require_checkpoint(self.candidate_dir(iv, delta), f"candidate checkpoint (delta={delta})", False)
        self.state = state
        self._guide_weights_live = False
        return snapshot

    def adopt_checkpoint_state(self, raw: dict[str, Any] | None, source: Path) -> None:
        """Take the state stored in the real checkpoint being resumed (None: a checkpoint without NPO state)."""
        state = ForkState() if raw is None else ForkState.from_dict(raw, source)
        if state.phase in IN_FLIGHT:
            raise NPOStateError(f"a real checkpoint cannot hold the in-flight phase {state.phase.value}: {source}")
        if state.phase == Phase.GUIDED:
            self.pool = GuidePool.load(self.pool_dir(state.intervention), state.intervention.window)
        self._persist(state)
        self._remove_stale_forks()

    # --- the transition function -------------------------------------------------------------------------------

    def _plan(self, completed: int, metrics: dict[str, float]) -> ForkState | None:
        """The LOOKAHEAD state of a fork due at this boundary, if any."""
        if self.auto is None:
            iv = self.due(completed)
            return None if iv is None else ForkState(Phase.LOOKAHEAD, iv)
        plan = self.auto.plan(completed)
        if plan is None:
            return None
        metrics[f"npo/auto/trigger/{plan.trigger.reason}"] = plan.trigger.value
        self.auto.forked()
        iv = Intervention(completed, max(plan.candidate_deltas), 0)
        return ForkState(Phase.LOOKAHEAD, iv, candidates=plan.candidate_deltas)

    def advance(
        self,
        completed: int,
        engine: ForkEngine,
        *,
        can_fork: bool = True,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> dict[str, float]:
        """Run every transition due at this step boundary; returns ``npo/*`` metrics about what happened.

        ``can_fork=False`` at the end of an epoch: a look-ahead may finish and roll back there, but a new fork waits
        for the next epoch's first boundary, whose data position the snapshot must hold. ``should_stop`` is asked
        before each unit of a collection or a probe (both resume from persisted progress); when it says yes,
        :class:`ForkInterrupted` is raised.
        """
        metrics: dict[str, float] = {}
        while True:
            state = self.state
            iv = state.intervention
            if state.phase == Phase.IDLE:
                forked = self._plan(completed, metrics) if can_fork else None
                if forked is None:
                    return metrics
                iv = forked.intervention
                shutil.rmtree(self.fork_dir(iv), ignore_errors=True)  # leftovers of an attempt that died early
                with _timed(metrics, "npo/time/snapshot_s"):
                    engine.save_snapshot(self.snapshot_dir(iv), completed)
                self.pool = GuidePool()
                self._guide_weights_live = False
                self._persist(forked)
                metrics["npo/event/fork"] = 1.0
                return metrics
            if state.phase == Phase.LOOKAHEAD:
                ahead = completed - iv.at_step
                if ahead in state.candidates:
                    with _timed(metrics, "npo/time/guide_checkpoint_s"):
                        engine.save_guide_checkpoint(self.candidate_dir(iv, ahead), completed)
                if ahead < iv.delta:
                    return metrics
                if state.candidates:
                    self._persist(replace(state, phase=Phase.PROBE))
                    continue
                with _timed(metrics, "npo/time/guide_checkpoint_s"):
                    engine.save_guide_checkpoint(self.guide_dir(iv), completed)
                self._guide_weights_live = True
                self._persist(ForkState(Phase.COLLECT, iv, 0))
            elif state.phase == Phase.PROBE:
                done = dict(state.probed)
                for delta in state.candidates:
                    if delta in done:
                        continue
                    if should_stop():
                        raise ForkInterrupted(self.state)
                    with _timed(metrics, "npo/time/probe_s"):
                        q = engine.probe_candidate(
                            self.candidate_dir(iv, delta), self.probe_dir(iv, delta), self.probe_set_path(iv)
                        )
                    self._persist(replace(self.state, probed=(*self.state.probed, (delta, q))))
                self._persist(replace(self.state, phase=Phase.SELECT))
            elif state.phase == Phase.SELECT:
                self._select(engine, metrics)
            elif state.phase == Phase.COLLECT:
                self._collect(iv, engine, metrics, should_stop)
                self._persist(ForkState(Phase.ROLLBACK, iv, iv.window))
            elif state.phase == Phase.ROLLBACK:
                with _timed(metrics, "npo/time/rollback_s"):
                    engine.rollback(self.snapshot_dir(iv), iv.at_step)
                if iv.window == 0:  # AutoNPO found no usable Δ*: the look-ahead is thrown away
                    self._end_fork(iv)
                    self.auto.window_ended(completed=iv.at_step)
                    metrics["npo/event/rollback"] = 1.0
                    return metrics
                v = self._measure_v(iv, engine, metrics)
                self.pool = GuidePool.load(self.pool_dir(iv), iv.window)
                if self.pool.num_guides == 0:
                    logger.warning(
                        "NPO intervention at step %d: the near-future policy solved none of the window's prompts; "
                        "the guided window runs as plain GRPO",
                        iv.at_step,
                    )
                self.state = ForkState(Phase.GUIDED, iv, v=v)
                engine.on_guided_start()
                self._persist(self.state)
                self._end_fork(iv)
                metrics.update(
                    {
                        "npo/event/rollback": 1.0,
                        "npo/pool/prompts": float(len(self.pool)),
                        "npo/pool/guides": float(self.pool.num_guides),
                    }
                )
                return metrics
            elif state.phase == Phase.GUIDED:
                if completed < iv.end_step:
                    return metrics
                self.pool = GuidePool()
                self._persist(ForkState())
                if self.auto is not None:
                    self.auto.window_ended(completed)
                metrics["npo/event/window_end"] = 1.0

    def _select(self, engine: ForkEngine, metrics: dict[str, float]) -> None:
        """Measure each candidate's V under θ_T, pick Δ*, keep only its weights (as the guide checkpoint)."""
        state = self.state
        iv = state.intervention
        engine.load_guide_checkpoint(self.snapshot_dir(iv))  # θ_T scores every candidate's probe samples
        self._guide_weights_live = False
        candidates = []
        with _timed(metrics, "npo/time/select_s"):
            for delta, q in state.probed:
                candidates.append(Candidate(delta, q, engine.variance_cost(self.probe_dir(iv, delta))))
        decision = select_delta(candidates)
        for c in candidates:
            metrics.update({f"npo/auto/candidate_{c.delta}/{name}": getattr(c, name) for name in ("q", "v", "s")})
        metrics["npo/auto/delta_star"] = float(decision.delta or 0)
        logger.info(
            "AutoNPO at step %d: %s -> delta*=%s (%s)",
            iv.at_step,
            ", ".join(f"delta={c.delta} Q={c.q:.3g} V={c.v:.3g} S={c.s:.3g}" for c in candidates),
            decision.delta,
            decision.reason,
        )
        if decision.delta is None:
            chosen = Intervention(iv.at_step, 0, 0)
        else:
            chosen = Intervention(iv.at_step, decision.delta, self.guided_window or decision.delta)
            shutil.rmtree(self.guide_dir(iv), ignore_errors=True)
            self.candidate_dir(iv, decision.delta).rename(self.guide_dir(iv))
        for delta in state.candidates:
            shutil.rmtree(self.candidate_dir(iv, delta), ignore_errors=True)
            shutil.rmtree(self.probe_dir(iv, delta), ignore_errors=True)
        self.probe_set_path(iv).unlink(missing_ok=True)
        self._persist(ForkState(Phase.COLLECT if decision.delta else Phase.ROLLBACK, chosen, 0))

    def _measure_v(self, iv: Intervention, engine: ForkEngine, metrics: dict[str, float]) -> float | None:
        """V of the window's sampled guides under the rolled-back policy θ_T."""
        if not self.samples_dir(iv).is_dir():
            return None
        with _timed(metrics, "npo/time/variance_s"):
            v = engine.variance_cost(self.samples_dir(iv))
        if math.isnan(v):
            return None
        metrics["npo/signal/v"] = v
        return v

    def _end_fork(self, iv: Intervention) -> None:
        """After a rollback: the snapshot, the guide weights and the V samples are no longer needed."""
        if iv.window == 0:
            self._persist(ForkState())
        for name in ("snapshot", "guide", "samples", "lookahead"):
            shutil.rmtree(self.fork_dir(iv) / name, ignore_errors=True)

    def _collect(
        self, iv: Intervention, engine: ForkEngine, metrics: dict[str, float], should_stop: Callable[[], bool]
    ) -> None:
        if self.state.collected_batches < iv.window and should_stop():
            raise ForkInterrupted(self.state)
        if not self._guide_weights_live:
            engine.load_guide_checkpoint(self.guide_dir(iv))
            self._guide_weights_live = True
        first = self.state.collected_batches
        window = GuidePool.load(self.pool_dir(iv), first)  # batches collected before a restart
        solved = prompts = 0
        with _timed(metrics, "npo/time/collect_s"):
            batches = engine.collect_guides(
                self.snapshot_dir(iv), first, iv.window - first, iv.at_step + iv.delta, self.samples_dir(iv)
            )
            for index, entries in batches:
                for key, entry in entries.items():
                    window.add(key, entry)  # a prompt key seen in an earlier window batch is an error
                GuidePool.write_batch(self.pool_dir(iv), index, entries)
                self._persist(ForkState(Phase.COLLECT, iv, index + 1))
                prompts += len(entries)
                solved += sum(1 for e in entries.values() if e.samples)
                if index + 1 < iv.window and should_stop():
                    raise ForkInterrupted(self.state)
        if self.state.collected_batches != iv.window:
            raise RuntimeError(
                f"guide collection stopped after {self.state.collected_batches} of {iv.window} window batches"
            )
        metrics["npo/collect/prompts"] = float(prompts)
        metrics["npo/collect/solved_fraction"] = solved / prompts if prompts else 0.0

    def _remove_stale_forks(self) -> None:
        """Snapshots and guide checkpoints are only needed while a fork is in flight."""
        if not self.state_dir.is_dir():
            return
        for fork in self.state_dir.glob("fork_*"):
            for stale in ("snapshot", "guide", "samples", "lookahead", "candidate_*", "probe_*"):
                for path in fork.glob(stale):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)


def _require_checkpoint(path: Path, what: str, needs_data: bool = True) -> None:
    actor = path / "actor"
    if not actor.is_dir() or not any(actor.iterdir()):
        raise NPOStateError(f"{what} needed to resume is missing or empty: {actor}")
    if needs_data and not (path / "data.pt").is_file():
        raise NPOStateError(f"{what} needed to resume has no dataloader state: {path / 'data.pt'}")


class _timed:
    """Adds the wall time of a block to ``metrics[key]``."""

    def __init__(self, metrics: dict[str, float], key: str) -> None:
        self.metrics, self.key = metrics, key

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.metrics[self.key] = self.metrics.get(self.key, 0.0) + time.perf_counter() - self.start
