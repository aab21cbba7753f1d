"""The verl side of a fork: snapshots, guide sampling and rollback for :class:`npo_ext.fork.ForkManager`.

Every action goes through verl's own machinery: the worker group's checkpoint save/load (weights, optimizer,
LR scheduler, RNG), the ``StatefulDataLoader`` state, the trainer's step counter, and the rollout manager that
``fit()`` itself uses (vLLM replicas on GPU, the in-worker transformers rollout on CPU).

Rollout replicas follow verl 0.9.1's contract (``fit()`` and ``engine_workers.update_weights``): the actor saves and
loads while the replicas sleep, and only ``checkpoint_manager.update_weights`` wakes them, pushing the actor's live
weights. In hybrid mode a sleeping vLLM has discarded its weights and KV cache, so nothing may generate before that
push. ``fit()`` leaves the replicas awake at a step boundary and expects them awake after it: the engine puts them
to sleep before its first save or load, wakes them with the guide (or candidate) weights for each sampling batch and
puts them back to sleep right after it, so the actor's own forward (the top-k log-probs V needs) never runs beside
an awake replica, as in ``fit()``. :meth:`wake_rollout` (called by the trainer at the end of the boundary) wakes them
with whatever the actor holds then.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from verl import DataProto
from verl.protocol import pad_dataproto_to_divisor, unpad_dataproto

from npo_ext.guide_pool import GuideSample, PromptGuides, select_guides
from npo_ext.lookahead_reuse import PROVENANCE as LOOKAHEAD
from npo_ext.lookahead_reuse import LookaheadGroup, load_batch, plan_collection, write_batch
from npo_ext.persist import atomic_torch_save, folder_bytes, link_tree
from npo_ext.prompt_keys import check_one_prompt_per_key
from npo_ext.signals import Chi2TopK, TopKScores, v_from_rows
from recipes.npo.fork_host import ForkHost
from recipes.npo.topk_forward import SEQUENCE_TENSORS, actor_log_probs_at, actor_topk

logger = logging.getLogger(__name__)


class VerlForkEngine:
    """Implements ``npo_ext.fork.ForkEngine`` on verl, for a trainer that is a :class:`ForkHost`."""

    def __init__(self, trainer: ForkHost) -> None:
        self.trainer = trainer
        self._rollout_asleep = False  # fit() leaves the replicas awake at every step boundary
        self._restored_from: Path | None = None  # the snapshot the last rollback restored
        self._held_snapshot: str | None = None  # the snapshot's actor folder the ranks hold in host memory
        # checkpoint bytes this fork wrote, read, and hard-linked instead of writing (logged at its end)
        self.fork_io = {"written": 0, "read": 0, "linked": 0}

    # --- rollout replicas ----------------------------------------------------------------------------------------

    def _sleep_rollout(self) -> None:
        if not self._rollout_asleep:
            self.trainer.checkpoint_manager.sleep_replicas()
            self._rollout_asleep = True

    def wake_rollout(self) -> None:
        """Push the actor's current weights to the replicas (waking them) if the engine put them to sleep."""
        if self._rollout_asleep:
            self.trainer.checkpoint_manager.update_weights(self.trainer.global_steps - 1)
            self._rollout_asleep = False

    # --- snapshots -----------------------------------------------------------------------------------------------

    def save_snapshot(self, directory: Path, step: int) -> None:
        """The full training state at kept step ``step``. When verl checkpointed this very step at this boundary
        (``save_freq``), the snapshot hard-links that checkpoint's actor files instead of writing them again (verl
        never rewrites a checkpoint's files, and a link outlives the checkpoint's rotation)."""
        existing = self.trainer.checkpoint_folder(step) / "actor"
        directory.mkdir(parents=True, exist_ok=True)
        complete = any(existing.glob("optim_world_size_*")) and any(existing.glob("extra_state_world_size_*"))
        if complete and link_tree(existing, directory / "actor"):
            self.fork_io["linked"] += folder_bytes(directory / "actor")
        else:
            self._save_actor(directory, step, weights_only=False)
        torch.save(self.trainer.data_state_at_boundary, directory / "data.pt")
        if self.trainer.npo.snapshot_in_memory:
            self._held_snapshot = str(directory / "actor")
            held = self.trainer.actor_rollout_wg.keep_snapshot_in_memory(self._held_snapshot)
            self.trainer.stage_metrics({"npo/snapshot_host_gib": sum(held) / 2**30})

    def save_guide_checkpoint(self, directory: Path, step: int) -> None:
        npo = self.trainer.npo
        dtype = guide_weights_dtype(npo.guide_dtype, self.trainer.config.actor_rollout_ref.rollout.dtype)
        self._save_actor(directory, step, weights_only=npo.weights_only_guides, dtype=dtype)

    def _save_actor(self, directory: Path, step: int, weights_only: bool, dtype: str | None = None) -> None:
        self._sleep_rollout()
        directory.mkdir(parents=True, exist_ok=True)
        self.trainer.actor_rollout_wg.save_unmanaged_checkpoint(str(directory / "actor"), step, weights_only, dtype)
        self.fork_io["written"] += folder_bytes(directory / "actor")

    def load_guide_checkpoint(self, directory: Path) -> None:
        """A guide's, candidate's or snapshot's weights, to sample from or score with (a rollback restores the rest)."""
        self._load_weights(directory / "actor", "guide checkpoint")

    def use_weights(self, checkpoint: Path | None) -> None:
        """Sample from a verl checkpoint folder's actor weights next (None: from what the actor holds); the replicas
        get them at the next :meth:`sample`."""
        if checkpoint is not None:
            self._load_weights(checkpoint / "actor", "checkpoint to sample from")
        else:
            self._sleep_rollout()

    def _load_weights(self, actor: Path, what: str) -> None:
        self._sleep_rollout()
        self.trainer.load_actor(actor, what, weights_only=True)
        if str(actor) != self._held_snapshot:  # the ranks read a snapshot they hold from host memory
            self.fork_io["read"] += folder_bytes(actor, skip_prefixes=("optim_",))

    def rollback(self, snapshot: Path, step: int) -> None:
        """Restore the snapshot: the actor from host memory where every rank holds it (``npo.snapshot_in_memory``,
        no restart since), else from disk; the data position and the step counter from the folder."""
        self._sleep_rollout()
        wg = self.trainer.actor_rollout_wg
        in_memory = self.trainer.npo.snapshot_in_memory and all(
            wg.restore_snapshot_from_memory(str(snapshot / "actor"))
        )
        self.trainer.restore_folder(snapshot, step, what="fork snapshot", load_actor=not in_memory)
        if not in_memory:
            self.fork_io["read"] += folder_bytes(snapshot / "actor")
        if self.trainer.npo.snapshot_in_memory:
            wg.drop_snapshot_from_memory()
            self._held_snapshot = None
        self.trainer.resume_at(step)
        self._restored_from = snapshot

    def after_rollback(self) -> None:
        """A real checkpoint at the fork step carrying the state after the rollback (GUIDED, or IDLE with AutoNPO's
        updated controller when no Δ* was found), so a kill right after it resumes there. The actor holds exactly the
        snapshot's state, so the checkpoint's actor files are the snapshot's, hard-linked, not written again."""
        trainer = self.trainer
        if trainer.npo.checkpoint_at_rollback and trainer.config.trainer.save_freq > 0:
            self.save_real_checkpoint(trainer.global_steps - 1, same_as=self._restored_from / "actor")
        trainer.stage_metrics({f"npo/io/fork_{k}_gib": v / 2**30 for k, v in self.fork_io.items()})
        self.fork_io = dict.fromkeys(self.fork_io, 0)

    def load_teacher(self, directory: Path) -> None:
        """Every rank holds θ_{T+Δ}'s weight shard in host memory for the guided window's distillation forwards.
        Called while the replicas sleep: right after a rollback, or at start-up before fit() first wakes them."""
        held = self.trainer.actor_rollout_wg.npo_load_teacher(str(directory / "actor"))
        self.fork_io["read"] += folder_bytes(directory / "actor", skip_prefixes=("optim_",))
        self.trainer.stage_metrics({"npo/distill/teacher_host_gib": sum(held) / 2**30})

    def drop_teacher(self) -> None:
        self.trainer.actor_rollout_wg.npo_drop_teacher()

    def save_real_checkpoint(self, step: int, same_as: Path | None = None) -> None:
        """A verl checkpoint of the kept step ``step`` from a step boundary, with the current NPO state; if one exists
        already (saved by ``save_freq``), only its NPO state is rewritten. ``same_as``: an actor checkpoint folder
        holding the actor's current state, whose shards the checkpoint links instead of writing."""
        trainer = self.trainer
        existing = trainer.checkpoint_folder(step)
        if (existing / "actor").is_dir():
            trainer.write_checkpoint_state(existing)
            return
        self._sleep_rollout()
        if same_as is not None:
            trainer.actor_rollout_wg.link_next_checkpoint(str(same_as))
        trainer.save_kept_checkpoint(step)
        self.fork_io["linked" if same_as is not None else "written"] += folder_bytes(existing / "actor")

    # --- guide collection ----------------------------------------------------------------------------------------

    def collect_guides(
        self, snapshot: Path, first_batch: int, num_batches: int, guide_step: int, samples_dir: Path
    ) -> Iterator[tuple[int, dict[str, PromptGuides]]]:
        state = torch.load(snapshot / "data.pt", weights_only=False)
        batches = self.trainer.train_dataloader.peek(state, first_batch + num_batches)
        v_rows = math.ceil(self.trainer.npo.v_samples / max(first_batch + num_batches, 1))
        for index, batch_dict in enumerate(batches):
            if index >= first_batch:
                samples_path = samples_dir / f"batch_{index:05d}.pt"
                entries = self._collect_batch(batch_dict, index, guide_step, samples_path, v_rows)
                print(f"[npo] collected guides for window batch {index + 1} of {first_batch + num_batches}", flush=True)
                yield index, entries

    def sample(self, gen_batch: DataProto, n: int) -> DataProto:
        """``n`` responses per prompt from the actor's current weights (the replicas are woken with them, then put
        back to sleep so the actor can run its own forward)."""
        trainer = self.trainer
        gen_batch.meta_info["temperature"] = trainer.config.actor_rollout_ref.rollout.temperature
        gen_batch.meta_info["global_steps"] = trainer.global_steps
        self.wake_rollout()
        output = generate_in_whole_chunks(
            trainer.rollout,
            gen_batch.repeat(n, interleave=True),
            trainer.config.actor_rollout_ref.rollout.agent.num_workers,
        )
        self._sleep_rollout()
        trainer.record_guide_sampling(output)
        return output

    def verified_responses(self, output: DataProto) -> list[tuple[tuple[int, ...], float, bool]]:
        """Per generated row: its response ids, its score, and whether it is verified-correct (judged correct *and*
        complete: it ended with an EOS id, not truncated)."""
        npo = self.trainer.npo
        acc = np.asarray(output.non_tensor_batch[npo.acc_key], dtype=np.float64)
        scores = output.batch["rm_scores"].sum(-1).tolist()
        lengths = output.batch["response_mask"].sum(-1).tolist()
        eos = self.trainer.eos_token_ids
        rows = []
        for r in range(len(output)):
            ids = tuple(output.batch["responses"][r, : int(lengths[r])].tolist())
            rows.append((ids, float(scores[r]), bool(acc[r] >= npo.guide_min_acc and ids and ids[-1] in eos)))
        return rows

    def _collect_batch(
        self, batch_dict: dict, batch_index: int, guide_step: int, samples_path: Path, v_rows: int
    ) -> dict[str, PromptGuides]:
        trainer, npo = self.trainer, self.trainer.npo
        batch = DataProto.from_single_dict(batch_dict)
        batch.non_tensor_batch["uid"] = new_uids(len(batch))
        keys = trainer.prompt_keys(batch.non_tensor_batch)
        check_one_prompt_per_key(keys, batch.non_tensor_batch["uid"], npo.prompt_key)
        seen = None
        if npo.collect_skip_expected_passes or npo.collect_reuse_lookahead:
            seen = load_batch(trainer.fork_manager.lookahead_dir(trainer.fork_manager.state.intervention), batch_index)
        plan = plan_collection(
            keys,
            seen,
            npo.gate,
            skip_expected_passes=npo.collect_skip_expected_passes,
            reuse_lookahead=npo.collect_reuse_lookahead,
            max_guides=npo.max_guides_per_prompt,
        )
        sampled = self._sample_guides(batch, plan.sample, guide_step, samples_path, v_rows)
        trainer.add_collect_metrics(len(plan.sample), len(plan.reused), len(plan.skipped))
        entries = {**plan.reused, **{keys[p]: entry for p, entry in sampled.items()}}
        return {key: entries[key] for key in keys if key in entries}

    def _sample_guides(
        self, batch: DataProto, positions: list[int], guide_step: int, samples_path: Path, v_rows: int
    ) -> dict[int, PromptGuides]:
        """Sample the prompts at ``positions``: ``guide_n`` each, or in rounds of ``guide_round_n`` until a prompt has
        ``max_guides_per_prompt`` verified-correct samples (early stopping). A prompt's counts (for Q) are those of
        the first round: stopping at the first verified guide would bias a pass@k over all rounds upwards."""
        trainer, npo = self.trainer, self.trainer.npo
        per_round = npo.guide_round_n or npo.guide_n
        drawn: dict[int, list[tuple[tuple[int, ...], float, bool]]] = {p: [] for p in positions}
        gen_batch = trainer.gen_batch_of(batch)
        pending, first_round = list(positions), True
        while pending:
            k = min(per_round, npo.guide_n - len(drawn[pending[0]]))
            output = self.sample(gen_batch if len(pending) == len(gen_batch) else gen_batch[pending], k)
            if first_round:  # V: the first round's responses
                self.store_v_samples(output, samples_path, v_rows)
                first_round = False
            rows = self.verified_responses(output)
            for j, position in enumerate(pending):
                drawn[position] += rows[j * k : (j + 1) * k]
            pending = [
                p
                for p in pending
                if len(drawn[p]) < npo.guide_n and sum(ok for *_, ok in drawn[p]) < npo.max_guides_per_prompt
            ]
        entries = {}
        for position, rows in drawn.items():
            correct = [(ids, score) for ids, score, ok in rows if ok]
            keep = select_guides([ids for ids, _ in correct], npo.guide_select, npo.max_guides_per_prompt)
            samples = [GuideSample(correct[i][0], correct[i][1], guide_step) for i in keep]
            first_round = rows[:per_round]
            entries[position] = PromptGuides(len(first_round), sum(ok for *_, ok in first_round), samples)
        return entries

    def record_lookahead(self, prompts: DataProto, output: DataProto, batch_index: int) -> None:
        """Keep what a look-ahead step's rollout saw of window batch ``batch_index`` (``npo_ext.lookahead_reuse``)."""
        n = self.trainer.config.actor_rollout_ref.rollout.n
        keys = self.trainer.prompt_keys(prompts.non_tensor_batch)
        rows = self.verified_responses(output)
        step = self.trainer.global_steps - 1  # the weights that generated this batch
        groups = {}
        for start in range(0, len(keys), n):
            group = rows[start : start + n]
            correct = [GuideSample(ids, score, step, provenance=LOOKAHEAD) for ids, score, ok in group if ok]
            acc = np.asarray(output.non_tensor_batch[self.trainer.npo.acc_key][start : start + n], dtype=np.float64)
            groups[keys[start]] = LookaheadGroup(float(acc.mean()), len(group), correct)
        fork_manager = self.trainer.fork_manager
        write_batch(fork_manager.lookahead_dir(fork_manager.state.intervention), batch_index, groups)

    # --- V: the guide's top-k now, the current policy's log-probs on those ids after the rollback --------------------

    def store_v_samples(self, output: DataProto, path: Path, rows: int) -> None:
        """Keep the first ``rows`` sampled responses (correct or not) with what V needs of the actor's distribution at
        each of their tokens (``npo_ext.topk.guide_topk``)."""
        if rows <= 0:
            return
        sample = output[: min(rows, len(output))]
        sample = sample.select(
            batch_keys=list(SEQUENCE_TENSORS),
            non_tensor_batch_keys=[k for k in V_SAMPLE_NON_TENSORS if k in sample.non_tensor_batch],
        )
        kept = actor_topk(self.trainer, sample, self.trainer.npo.v_topk, self.trainer.npo.v_tail_draws)
        self.trainer.record_scoring(sample)
        for key, field in GUIDE_FIELDS.items():
            sample.batch[key] = getattr(kept, field)
        atomic_torch_save(sample, path)

    def variance_cost(self, samples_dir: Path) -> float:
        """Token-weighted V over every stored sample file, under the actor's current weights."""
        return v_from_rows(self.variance_rows(samples_dir))

    def variance_rows(self, samples_dir: Path) -> np.ndarray:
        """V's per-response sums (``Chi2TopK.rows``) over every stored sample file, in file and row order."""
        self._sleep_rollout()
        total = Chi2TopK()
        for path in sorted(samples_dir.glob("batch_*.pt")):
            sample = torch.load(path, weights_only=False)
            guide = {field: sample.batch[key] for key, field in GUIDE_FIELDS.items()}
            k = guide["ids"].shape[-1]
            ids = torch.cat([guide["ids"], guide["draw_ids"]], -1)
            values, tail = actor_log_probs_at(self.trainer, sample, ids, exclude=k)
            self.trainer.record_scoring(sample)
            total.add(
                TopKScores(values[..., :k], values[..., k:], tail),
                TopKScores(guide["log_probs"], guide["draw_log_probs"], guide["tail"]),
                sample.batch["response_mask"],
            )
        return total.rows

    # --- AutoNPO probing ------------------------------------------------------------------------------------------

    def probe_candidate(self, checkpoint: Path, samples_dir: Path | None, probe_set: Path) -> list[int]:
        """Per probe prompt, how many of ``probe_k`` samples of the policy in ``checkpoint`` are verified-correct; with
        ``samples_dir``, the samples V needs are stored there."""
        npo = self.trainer.npo
        probe = torch.load(probe_set, weights_only=False)
        if not probe:
            return []
        self.load_guide_checkpoint(checkpoint)
        prompts = self.trainer.gen_batch_at([m.payload for m in probe], [m.key for m in probe])
        prompts.non_tensor_batch["uid"] = new_uids(len(probe))
        k = npo.auto.probe_k
        output = self.sample(DataProto.from_dict(non_tensors=prompts.non_tensor_batch), k)
        if samples_dir is not None:
            self.store_v_samples(output, samples_dir / "batch_00000.pt", npo.v_samples)
        return [sum(ok for *_, ok in rows) for rows in _groups(self.verified_responses(output), k)]


V_SAMPLE_NON_TENSORS = ("multi_modal_inputs",)
GUIDE_FIELDS = {f"npo_guide_{name}": name for name in ("ids", "log_probs", "draw_ids", "draw_log_probs", "tail")}


def guide_weights_dtype(guide_dtype: str, rollout_dtype: str | None) -> str | None:
    """The dtype guide weights are cast to when saved (``npo.guide_dtype``), or None for verl's own fp32 format."""
    names = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    dtype = guide_dtype if guide_dtype != "auto" else names.get(str(rollout_dtype), str(rollout_dtype or "bfloat16"))
    if dtype not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"npo.guide_dtype=auto: rollout dtype {rollout_dtype!r} is not a float dtype")
    return None if dtype == "float32" else dtype


def generate_in_whole_chunks(rollout, batch: DataProto, num_workers: int) -> DataProto:
    """Generate with a rollout manager whose agent loop splits a batch evenly across ``num_workers``: pad as verl's
    ``_validate`` does, then drop the pad."""
    padded, pad_size = pad_dataproto_to_divisor(batch, num_workers)
    return unpad_dataproto(rollout.generate_sequences(padded), pad_size=pad_size)


def _groups(rows: list, size: int) -> list[list]:
    """Consecutive groups of ``size`` rows (a prompt's samples, as ``DataProto.repeat(interleave=True)`` lays them)."""
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def new_uids(count: int) -> np.ndarray:
    """Fresh group ids for ``count`` prompts, as verl's fit() assigns them."""
    return np.array([str(uuid.uuid4()) for _ in range(count)], dtype=object)
