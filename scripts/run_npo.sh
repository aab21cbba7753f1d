#!/usr/bin/env bash
# Launch NPO (or the GRPO baseline) on verl 0.9.1.
#
#   bash scripts/run_npo.sh --local [hydra overrides...]   tiny CPU demo: random Qwen3-VL, shapes data, hf_cpu rollout
#   bash scripts/run_npo.sh [hydra overrides...]           GPU node: vLLM rollout; set MODEL_PATH, TRAIN_FILES, VAL_FILES
#
# Environment: RECIPE=npo|grpo (default npo), OUT_DIR (default outputs/<recipe>_local for --local), PYTHON (default
# .venv/bin/python if present). Extra arguments are Hydra overrides, e.g. 'npo.interventions=[{at_step:0,delta:20}]'.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCAL=0
if [[ "${1:-}" == "--local" ]]; then LOCAL=1; shift; fi
RECIPE=${RECIPE:-npo}
case "$RECIPE" in
  npo) CONFIG_DIR=recipes/npo/config; CONFIG_NAME=npo_trainer ;;
  grpo) CONFIG_DIR=recipes/grpo/config; CONFIG_NAME=grpo_trainer ;;
  *) echo "RECIPE must be npo or grpo, got '$RECIPE'" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
export WANDB_MODE=${WANDB_MODE:-disabled} TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=1

if [[ $LOCAL == 1 ]]; then
  OUT_DIR=${OUT_DIR:-outputs/${RECIPE}_local}
  mkdir -p "$OUT_DIR"
  OUT_DIR=$(cd "$OUT_DIR" && pwd)
  "$PYTHON" -m recipes.demo.tiny_model "$OUT_DIR/model" >/dev/null
  "$PYTHON" -m recipes.demo.shapes_dataset "$OUT_DIR/data" --train-size 64 --val-size 8 >/dev/null
  # CPU platform plugin (verl has none) and reuse of the FSDP engine registered for cuda.
  export VERL_USE_EXTERNAL_MODULES=recipes.cpu.platform VERL_PLATFORM=cpu VERL_ENGINE_DEVICE=cuda
  ARGS=(
    data.train_files="$OUT_DIR/data/train.parquet" data.val_files="$OUT_DIR/data/val.parquet"
    data.train_batch_size=4 data.max_prompt_length=64 data.max_response_length=16
    data.filter_overlong_prompts=false data.dataloader_num_workers=0
    actor_rollout_ref.model.path="$OUT_DIR/model"
    actor_rollout_ref.model.use_remove_padding=false actor_rollout_ref.model.enable_gradient_checkpointing=false
    +actor_rollout_ref.model.override_config.attn_implementation=sdpa
    actor_rollout_ref.actor.optim.lr=1e-3
    actor_rollout_ref.actor.use_dynamic_bsz=false actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16
    actor_rollout_ref.rollout.name=hf_cpu actor_rollout_ref.rollout.n=4
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 actor_rollout_ref.rollout.agent.num_workers=1
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16
    reward.custom_reward_function.path=pkg://recipes.demo.shapes_reward
    trainer.device=cpu trainer.n_gpus_per_node=1 trainer.nnodes=1
    trainer.total_training_steps=8 trainer.save_freq=4 trainer.test_freq=-1 trainer.val_before_train=false
    trainer.default_local_dir="$OUT_DIR/checkpoints" trainer.resume_mode=${RESUME_MODE:-disable}
    trainer.max_actor_ckpt_to_keep=2
    ray_kwargs.ray_init.num_cpus=4 +ray_kwargs.ray_init.num_gpus=1
  )
  if [[ $RECIPE == npo ]]; then
    ARGS+=('npo.interventions=[{at_step:0,delta:2},{at_step:4,delta:2}]')
  fi
else
  : "${MODEL_PATH:?set MODEL_PATH (e.g. a local Qwen3-VL-8B-Instruct folder)}"
  : "${TRAIN_FILES:?set TRAIN_FILES (verl parquet, e.g. from python -m data_prep mmfinereason)}"
  : "${VAL_FILES:?set VAL_FILES}"
  ARGS=(
    data.train_files="$TRAIN_FILES" data.val_files="$VAL_FILES" actor_rollout_ref.model.path="$MODEL_PATH"
    trainer.n_gpus_per_node="${GPUS_PER_NODE:-8}" trainer.nnodes="${NNODES:-1}"
  )
fi

echo "[run_npo] recipe=$RECIPE local=$LOCAL config=$CONFIG_DIR/$CONFIG_NAME.yaml"
exec "$PYTHON" -m recipes.npo.main_npo --config-path "$(pwd)/$CONFIG_DIR" --config-name "$CONFIG_NAME" "${ARGS[@]}" "$@"
