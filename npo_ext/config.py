"""Typed, validated NPO options (the ``npo:`` section of the recipe YAML).

Validation happens once, at start-up, so that a bad schedule fails before any GPU time is spent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

SLOT_POLICIES = ("last", "first", "lowest_reward")
GUIDE_SELECT_POLICIES = ("first", "shortest", "longest")
MODES = ("manual", "auto")
GUIDE_DTYPES = ("auto", "bfloat16", "float16", "float32")
# verl's kl_penalty estimators (core_algos.kl_penalty); "+" keeps the value and takes k2's gradient, the unbiased
# gradient of the reverse KL on the student's own samples
DISTILL_ESTIMATORS = ("k3+", "k3", "k1", "k2", "low_var_kl+", "low_var_kl", "kl", "mse", "abs")
logger = logging.getLogger(__name__)


class NPOConfigError(ValueError):
    """A user-facing configuration mistake; the message names the offending option."""


def _known_options(cls: type, raw: Mapping[str, Any] | None, section: str) -> dict[str, Any]:
    """A YAML section as a dict; a key that is not a field of ``cls`` is an error naming it, never ignored."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - {f.name for f in fields(cls)})
    if unknown:
        raise NPOConfigError(f"unknown {section} option(s): {', '.join(f'{section}.{k}' for k in unknown)}")
    return raw


@dataclass(frozen=True)
class Intervention:
    """One manual NPO intervention.

    ``at_step`` is the number of completed training steps at the fork (0 = before the first update, the paper's
    early bootstrapping case). ``delta`` look-ahead steps produce the guide; ``window`` guided steps follow the
    rollback (defaults to ``delta``: after Δ steps the student reaches the guide's age).
    """

    at_step: int
    delta: int
    window: int

    @property
    def end_step(self) -> int:
        """Completed-step count at which the guided window is over."""
        return self.at_step + self.window


@dataclass(frozen=True)
class AutoConfig:
    """AutoNPO options (``npo.auto``). The paper names the signals, not their settings: every default is our choice.

    Triggers (see ``npo_ext.auto_triggers``): bootstrap at step 0; reward stagnation (slope of the mean training
    reward over ``window`` steps below ``reward_slope_min`` per step); entropy collapse (mean token entropy below
    ``entropy_floor``, or a relative drop over ``entropy_drop`` against the previous window); no trigger within
    ``cooldown`` steps of a guided window's end, none after ``max_interventions``, none with fewer than ``min_pool``
    prompts in the mistake pool. Δ selection: one look-ahead of ``delta_max`` steps with a candidate snapshot every
    ``candidate_every`` steps; each candidate samples ``probe_k`` responses for up to ``probe_prompts`` mistake-pool
    prompts (drawn with ``probe_seed``). The mistake pool holds at most ``pool_capacity`` prompts, each for at most
    ``pool_max_age`` steps since it last failed. ``guided_window`` guided steps follow the rollback (0: as many as Δ*).
    """

    bootstrap: bool = True
    window: int = 10
    reward_slope_min: float = 0.002
    entropy_floor: float = 0.05
    entropy_drop: float = 0.3
    cooldown: int = 10
    max_interventions: int = 5
    min_pool: int = 8
    delta_max: int = 40
    candidate_every: int = 10
    probe_prompts: int = 32
    probe_k: int = 8
    probe_seed: int = 0
    pool_capacity: int = 4096
    pool_max_age: int = 200
    guided_window: int = 0

    def __post_init__(self) -> None:
        for name in ("window", "delta_max", "candidate_every", "probe_prompts", "probe_k", "pool_capacity"):
            if getattr(self, name) < 1:
                raise NPOConfigError(f"npo.auto.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("cooldown", "max_interventions", "min_pool", "pool_max_age", "guided_window"):
            if getattr(self, name) < 0:
                raise NPOConfigError(f"npo.auto.{name} must be >= 0, got {getattr(self, name)}")
        if self.candidate_every > self.delta_max:
            raise NPOConfigError(
                f"npo.auto.candidate_every={self.candidate_every} must not exceed npo.auto.delta_max={self.delta_max}"
            )
        if not 0.0 <= self.entropy_drop <= 1.0:
            raise NPOConfigError(f"npo.auto.entropy_drop must be a fraction in [0, 1], got {self.entropy_drop}")

    @property
    def candidate_deltas(self) -> tuple[int, ...]:
        """The look-ahead distances probed: every ``candidate_every`` steps up to ``delta_max`` (always included)."""
        deltas = list(range(self.candidate_every, self.delta_max + 1, self.candidate_every))
        return tuple(deltas if deltas[-1] == self.delta_max else [*deltas, self.delta_max])

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> AutoConfig:
        return cls(**_known_options(cls, raw, "npo.auto"))


@dataclass(frozen=True)
class DistillConfig:
    """Near-future on-policy distillation (``npo.distill``): this project's extension, not the paper's method (the
    paper only names on-policy distillation as future work). During a guided window θ_{T+Δ} (the guide checkpoint)
    scores every response token of the current policy's own rollouts, and the actor loss adds ``coef`` × a
    per-token KL estimate of the student against it. Every default is our choice.

    ``coef`` applies at the window's first step and moves linearly to ``coef_end`` at its last (None: constant).
    ``skip_guide_rows``: injected guide rows carry no KL term (they are θ_{T+Δ}'s own samples, off-policy for the
    student). ``inject_guides=false`` turns NPO's trajectory injection off (distillation alone, no guide sampling).
    """

    enable: bool = False
    coef: float = 0.1
    coef_end: float | None = None
    estimator: str = "k3+"
    skip_guide_rows: bool = True
    inject_guides: bool = True

    def __post_init__(self) -> None:
        if self.estimator not in DISTILL_ESTIMATORS:
            raise NPOConfigError(f"npo.distill.estimator must be one of {DISTILL_ESTIMATORS}, got {self.estimator!r}")
        for name in ("coef", "coef_end"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise NPOConfigError(f"npo.distill.{name} must be >= 0, got {value}")
        if not self.inject_guides and not self.enable:
            raise NPOConfigError(
                "npo.distill.inject_guides=false leaves a guided window nothing to do: set npo.distill.enable=true"
            )

    def coef_at(self, guided_step: int, window: int) -> float:
        """The coefficient at the ``guided_step``-th step (0-based) of a ``window``-step guided window."""
        if self.coef_end is None or window <= 1:
            return self.coef
        return self.coef + (self.coef_end - self.coef) * min(guided_step, window - 1) / (window - 1)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> DistillConfig:
        return cls(**_known_options(cls, raw, "npo.distill"))


@dataclass(frozen=True)
class NPOConfig:
    """All NPO options. Defaults follow the paper where it is explicit and are marked as our choice otherwise."""

    enable: bool = True
    # manual: the `interventions` schedule; auto: AutoNPO decides when and how far (`auto`).
    mode: str = "manual"
    interventions: tuple[Intervention, ...] = ()
    auto: AutoConfig = AutoConfig()
    distill: DistillConfig = DistillConfig()
    # Paper: a prompt's on-policy group accuracy strictly below 0.6 gets a guide slot.
    gate: float = 0.6
    # Key of the reward function's extra info that holds per-response accuracy (0/1).
    acc_key: str = "acc"
    # Our choice: which slot(s) of a gated group are overwritten, and how many (EasyVideoR1 uses the last, one).
    slot: str = "last"
    slots_per_group: int = 1
    # Guide sampling: samples per prompt from the near-future policy, and the accuracy a sample needs to count as
    # verified-correct. Only responses that terminated with EOS are kept.
    guide_n: int = 8
    guide_min_acc: float = 1.0
    guide_select: str = "first"
    max_guides_per_prompt: int = 1
    # Our options to make collection cheaper (off by default; see npo_ext/lookahead_reuse.py and the README's
    # equal-compute study). Sample guides in rounds of `guide_round_n` per prompt, dropping a prompt once it has
    # `max_guides_per_prompt` verified guides (0: all `guide_n` in one round). Skip prompts whose look-ahead group
    # passed the gate; give a prompt a verified-correct look-ahead response as its guide instead of sampling it.
    guide_round_n: int = 0
    collect_skip_expected_passes: bool = False
    collect_reuse_lookahead: bool = False
    # Our choice: Q is pass@k, k = min(q_k, samples drawn), from the unbiased estimator over the guide's samples, so
    # `guide_n` does not move it as long as it is >= q_k.
    q_k: int = 4
    # Our choice: V is measured on up to `v_samples` sampled guide responses per intervention (correct or not), from
    # the guide's top-`v_topk` log-probs per token, exact there, and `v_tail_draws` ids drawn from the rest of its
    # distribution for an unbiased tail (`npo_ext.signals.chi2_topk_terms`).
    v_samples: int = 64
    v_topk: int = 16
    v_tail_draws: int = 16
    # Non-tensor fields whose values, joined, identify a prompt across steps (verl's RLHFDataset copies
    # extra_info.index into `index`). With the data source in the key, datasets that each number from 0 don't collide.
    prompt_key: tuple[str, ...] = ("data_source", "index")
    # Where fork snapshots, guide pools and the NPO state live; empty = <trainer.default_local_dir>/npo.
    state_dir: str = ""
    # Save a real checkpoint at the fork step right after rollback, so a kill during the guided window resumes
    # inside the window (only when trainer.save_freq > 0).
    checkpoint_at_rollback: bool = True
    # Guide and AutoNPO candidate checkpoints hold no optimizer state (weights, scheduler and RNG only): they are only
    # sampled from and scored, never trained on. About a third of a full FSDP checkpoint with AdamW.
    weights_only_guides: bool = True
    # The dtype a weights-only guide's (and candidate's) weights are saved in: "auto" = the rollout's
    # (actor_rollout_ref.rollout.dtype, bf16 by default), which is all sampling from it uses. float32 keeps verl's own
    # checkpoint format for them.
    guide_dtype: str = "auto"
    # Each rank also keeps the fork snapshot in host memory (its shard of weights, optimizer state, scheduler, RNG),
    # so the rollback and AutoNPO's θ_T scoring read memory, not the checkpoint folder. The disk copy is still written
    # (a restarted run rolls back from it).
    snapshot_in_memory: bool = True
    # Skip periodic validation while looking ahead: those weights are thrown away.
    validate_during_lookahead: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.gate <= 1.0:
            raise NPOConfigError(f"npo.gate must be in (0, 1], got {self.gate}")
        if self.slot not in SLOT_POLICIES:
            raise NPOConfigError(f"npo.slot must be one of {SLOT_POLICIES}, got {self.slot!r}")
        if self.guide_select not in GUIDE_SELECT_POLICIES:
            raise NPOConfigError(f"npo.guide_select must be one of {GUIDE_SELECT_POLICIES}, got {self.guide_select!r}")
        if not self.prompt_key or not all(isinstance(f, str) and f for f in self.prompt_key):
            raise NPOConfigError(f"npo.prompt_key must name one or more batch fields, got {list(self.prompt_key)}")
        for name in ("slots_per_group", "guide_n", "max_guides_per_prompt"):
            if getattr(self, name) < 1:
                raise NPOConfigError(f"npo.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.guide_round_n <= self.guide_n:
            raise NPOConfigError(f"npo.guide_round_n must be in [0, guide_n={self.guide_n}], got {self.guide_round_n}")
        if not 0.0 < self.guide_min_acc <= 1.0:
            raise NPOConfigError(f"npo.guide_min_acc must be in (0, 1], got {self.guide_min_acc}")
        if self.guide_dtype not in GUIDE_DTYPES:
            raise NPOConfigError(f"npo.guide_dtype must be one of {GUIDE_DTYPES}, got {self.guide_dtype!r}")
        if self.mode not in MODES:
            raise NPOConfigError(f"npo.mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "auto" and self.interventions:
            raise NPOConfigError("npo.mode=auto decides its own interventions: leave npo.interventions empty")
        for name in ("q_k", "v_topk", "v_tail_draws"):
            if getattr(self, name) < 1:
                raise NPOConfigError(f"npo.{name} must be >= 1, got {getattr(self, name)}")
        if self.v_samples < 0:
            raise NPOConfigError(f"npo.v_samples must be >= 0 (0: V is not measured), got {self.v_samples}")
        if self.mode == "auto" and self.v_samples == 0:
            raise NPOConfigError(
                "npo.mode=auto picks Δ* by S = Q / V, so it needs V: set npo.v_samples >= 1 (0 turns V off)"
            )
        _check_schedule(self.interventions)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> NPOConfig:
        """Build from the plain dict of the YAML ``npo:`` section; unknown keys are an error, not ignored."""
        raw = _known_options(cls, raw, "npo")
        items = raw.get("interventions") or []
        if raw.get("mode") == "auto" and items:
            # a recipe's manual schedule under a command-line npo.mode=auto: AutoNPO plans its own interventions
            logger.warning("npo.mode=auto ignores the %d scheduled npo.interventions", len(items))
            items = []
        raw["interventions"] = tuple(_parse_intervention(i, item) for i, item in enumerate(items))
        if "auto" in raw:
            raw["auto"] = AutoConfig.from_dict(raw["auto"])
        if "distill" in raw:
            raw["distill"] = DistillConfig.from_dict(raw["distill"])
        if "prompt_key" in raw:
            key = raw["prompt_key"]
            raw["prompt_key"] = (key,) if isinstance(key, str) else tuple(key or ())
        return cls(**raw)

    def check_against_run(self, *, rollout_n: int, total_steps: int, steps_per_epoch: int) -> None:
        """Checks that need the run's shape: slot count vs group size, and windows vs run and epoch length."""
        if self.slots_per_group >= rollout_n:
            raise NPOConfigError(
                f"npo.slots_per_group={self.slots_per_group} must be smaller than rollout.n={rollout_n}: "
                "a group needs at least one on-policy response"
            )
        window = self.auto.guided_window
        if self.mode == "auto" and window and (window >= total_steps or 0 < steps_per_epoch < window):
            raise NPOConfigError(
                f"npo.auto.guided_window={window} cannot fit: the run has {total_steps} steps and "
                f"{steps_per_epoch} per epoch; a guided window must end before the last step and stay within one epoch"
            )
        for iv in self.interventions:
            if iv.at_step + iv.delta >= total_steps:
                raise NPOConfigError(
                    f"intervention at_step={iv.at_step}: the look-ahead would reach step {iv.at_step + iv.delta}, "
                    f"but the run has only {total_steps} steps; the look-ahead must end before the last step"
                )
            if iv.end_step > total_steps:
                raise NPOConfigError(
                    f"intervention at_step={iv.at_step}: the guided window ends at step {iv.end_step}, "
                    f"after the last step {total_steps}"
                )
            span = max(iv.delta, iv.window)
            if steps_per_epoch > 0 and iv.at_step // steps_per_epoch != (iv.at_step + span - 1) // steps_per_epoch:
                raise NPOConfigError(
                    f"intervention at_step={iv.at_step}: look-ahead/window of {span} steps crosses an epoch boundary "
                    f"({steps_per_epoch} steps per epoch); the rollback replays batches within one epoch only"
                )


def _parse_intervention(index: int, item: Any) -> Intervention:
    where = f"npo.interventions[{index}]"
    if not isinstance(item, Mapping):
        raise NPOConfigError(f"{where} must be a mapping with at_step, delta[, window], got {item!r}")
    unknown = sorted(set(item) - {"at_step", "delta", "window"})
    if unknown:
        raise NPOConfigError(f"{where}: unknown key(s) {unknown}; expected at_step, delta, window")
    missing = [k for k in ("at_step", "delta") if item.get(k) is None]
    if missing:
        raise NPOConfigError(f"{where}: missing {missing}")
    at_step, delta = int(item["at_step"]), int(item["delta"])
    window = int(item["window"]) if item.get("window") is not None else delta
    if at_step < 0:
        raise NPOConfigError(f"{where}.at_step must be >= 0, got {at_step}")
    if delta <= 0:
        raise NPOConfigError(f"{where}.delta must be > 0, got {delta}")
    if window <= 0:
        raise NPOConfigError(f"{where}.window must be > 0, got {window}")
    return Intervention(at_step=at_step, delta=delta, window=window)


def _check_schedule(interventions: tuple[Intervention, ...]) -> None:
    ordered = sorted(interventions, key=lambda iv: iv.at_step)
    if list(ordered) != list(interventions):
        raise NPOConfigError("npo.interventions must be sorted by at_step")
    for prev, nxt in zip(ordered, ordered[1:], strict=False):
        if nxt.at_step < prev.end_step:
            raise NPOConfigError(
                f"npo.interventions overlap: at_step={nxt.at_step} starts before the window of at_step="
                f"{prev.at_step} ends (step {prev.end_step})"
            )


GUIDANCE_SOURCES = ("near_future", "teacher", "experience_file", "replay")
# sources whose guides the run does not generate: their tokens are counted apart (npo/compute/external_tokens)
EXTERNAL_SOURCES = ("teacher", "experience_file")
LOSS_SHAPINGS = ("none", "policy_prob", "behaviour_ratio")
MIXINGS = ("replace", "append")


@dataclass(frozen=True)
class GuidanceConfig:
    """The ``guidance:`` section: where guide trajectories come from, how they enter a group and how their tokens are
    trained. NPO is the default; the baseline recipes (recipes/luffy, recipes/exgrpo, recipes/rlep) differ from it
    only here."""

    # near_future: NPO's forks (npo.*); teacher: a trace stored with the prompt in extra_info[teacher_field] (LUFFY);
    # experience_file: an earlier run's verified-correct responses, written by recipes/rlep/collect.py (RLEP);
    # replay: the run's own earlier successes on partly solved prompts, asked again as experience questions (ExGRPO)
    source: str = "near_future"
    # the recipe's plug-in at verl's seams, "module:Class" (recipes/common/guidance_plugin.py); empty: the source's own.
    # A source of a new recipe (not one of the four above) names its plug-in here
    plugin: str = ""
    # true: only groups whose on-policy accuracy is below npo.gate get npo.slots_per_group guide slots (NPO);
    # false: every group does (LUFFY: 7 on-policy + 1 teacher trace)
    gated: bool = True
    # replace: guides overwrite generated slots; append: rollout.n = G + M, a prompt with m <= M = npo.slots_per_group
    # guides gets G + M - m generated responses and m guides, advantages over all G + M (RLEP; needs gated=false)
    mixing: str = "replace"
    # loss on guide tokens: none (the backbone's clipped loss, NPO) | policy_prob (−A·p/(p+γ), unclipped; LUFFY) |
    # behaviour_ratio (−A·w/(w+γ), w = π_θ / the recorded π of the policy that wrote the replayed response;
    # source=replay; ExGRPO). Both need actor_rollout_ref.actor.policy_loss.loss_mode=npo_guided
    loss_shaping: str = "none"
    gamma: float = 0.1
    teacher_field: str = "teacher_response"
    # source=teacher: at start-up the recipe counts the training prompts whose trace fits data.max_response_length
    # (a longer one is skipped at injection); below this share it fails (error) or warns (warn)
    teacher_min_fit_share: float = 0.9
    teacher_fit_check: str = "error"
    # source=experience_file: the file, and the seed of the draws from it (the draw state is saved with checkpoints)
    experience_file: str = ""
    seed: int = 0  # also seeds source=replay's question draws
    # source=replay: the share of each batch's prompts replaced by experience questions once replay has started (a
    # batch whose on-policy accuracy exceeds replay_start_accuracy starts it), the σ of the Gaussian bucket weights
    # around n/2 successes, and the most successes kept per question (ours; ExGRPO keeps all). Successes are stored
    # from the step that starts replay on, as ExGRPO's release does; replay_collect_before_start: from step 1 (ours)
    replay_ratio: float = 0.5
    replay_start_accuracy: float = 0.35
    replay_sigma: float = 1.0
    replay_max_responses: int = 8
    replay_collect_before_start: bool = False
    # a question solved n/n leaves the training data from the next epoch on, as ExGRPO's release drops it (false: it
    # stays in the data and only leaves the pool)
    replay_drop_retired: bool = True

    def __post_init__(self) -> None:
        if self.source not in GUIDANCE_SOURCES and not self.plugin:
            raise NPOConfigError(
                f"guidance.source must be one of {GUIDANCE_SOURCES} or come with guidance.plugin, got {self.source!r}"
            )
        if self.loss_shaping not in LOSS_SHAPINGS:
            raise NPOConfigError(f"guidance.loss_shaping must be one of {LOSS_SHAPINGS}, got {self.loss_shaping!r}")
        if self.mixing not in MIXINGS:
            raise NPOConfigError(f"guidance.mixing must be one of {MIXINGS}, got {self.mixing!r}")
        if self.mixing == "append" and self.gated:
            raise NPOConfigError(
                "guidance.mixing=append decides before generation which rows are guides, so it cannot gate on the "
                "group's accuracy: set guidance.gated=false"
            )
        if self.source == "experience_file" and not self.experience_file:
            raise NPOConfigError("guidance.source=experience_file needs guidance.experience_file (a path)")
        if self.gamma <= 0:
            raise NPOConfigError(f"guidance.gamma must be > 0, got {self.gamma}")
        if self.loss_shaping == "behaviour_ratio" and self.source != "replay":
            raise NPOConfigError(
                "guidance.loss_shaping=behaviour_ratio needs the behaviour log-probs that only guidance.source=replay "
                "records"
            )
        if self.source == "replay" and self.mixing != "replace":
            raise NPOConfigError(
                "guidance.source=replay replaces one generated slot per experience question: mixing=replace"
            )
        if not 0.0 < self.replay_ratio < 1.0:
            raise NPOConfigError(f"guidance.replay_ratio must be in (0, 1), got {self.replay_ratio}")
        if self.replay_sigma <= 0 or self.replay_max_responses < 1:
            raise NPOConfigError("guidance.replay_sigma must be > 0 and guidance.replay_max_responses >= 1")
        if self.teacher_fit_check not in ("error", "warn") or not 0.0 <= self.teacher_min_fit_share <= 1.0:
            raise NPOConfigError(
                "guidance.teacher_fit_check must be error or warn and guidance.teacher_min_fit_share in [0, 1], got "
                f"{self.teacher_fit_check!r} and {self.teacher_min_fit_share}"
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> GuidanceConfig:
        return cls(**_known_options(cls, raw, "guidance"))
