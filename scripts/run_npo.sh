#!/usr/bin/env bash
# Launch NPO (or the GRPO baseline) on verl 0.9.1.
#
#   bash scripts/run_npo.sh --local [hydra overrides...]   tiny CPU demo (recipes/npo/config/npo_cpu_demo.yaml),
#                                                          in-worker transformers rollout (.venv)
#   bash scripts/run_npo.sh --local --rollout vllm [...]   the same demo through verl's vLLM rollout on CPU
#                                                          (npo_cpu_vllm_demo.yaml; .venv-vllm: setup_cpu.sh --vllm)
#   bash scripts/run_npo.sh [hydra overrides...]           GPU node: vLLM rollout; set MODEL_PATH, TRAIN_FILES, VAL_FILES
#
# Environment: RECIPE=npo|grpo (default npo), OUT_DIR (default outputs/<recipe>_local[_vllm] for --local), PYTHON (default
# .venv/bin/python, or .venv-vllm/bin/python with --rollout vllm, if present). Extra arguments are Hydra overrides,
# e.g. 'npo.interventions=[{at_step:0,delta:20}]'.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCAL=0
ROLLOUT=hf_cpu
while [[ $# -gt 0 ]]; do
  case "$1" in
    --local) LOCAL=1; shift ;;
    --rollout) ROLLOUT=${2:?--rollout needs hf_cpu or vllm}; shift 2 ;;
    *) break ;;
  esac
done
case "$ROLLOUT" in
  hf_cpu) DEMO=cpu_demo; VENV_DIR=.venv; SUFFIX= ;;
  vllm) DEMO=cpu_vllm_demo; VENV_DIR=.venv-vllm; SUFFIX=_vllm ;;
  *) echo "--rollout must be hf_cpu or vllm, got '$ROLLOUT'" >&2; exit 2 ;;
esac
if [[ $LOCAL == 0 && $ROLLOUT != hf_cpu ]]; then echo "--rollout only applies to --local (GPU runs use vllm)" >&2; exit 2; fi
RECIPE=${RECIPE:-npo}
case "$RECIPE" in
  npo) CONFIG_DIR=recipes/npo/config; CONFIG_NAME=npo_trainer ;;
  grpo) CONFIG_DIR=recipes/grpo/config; CONFIG_NAME=grpo_trainer ;;
  *) echo "RECIPE must be npo or grpo, got '$RECIPE'" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-$([[ -x $VENV_DIR/bin/python ]] && echo $VENV_DIR/bin/python || echo python3)}
export WANDB_MODE=${WANDB_MODE:-disabled} TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=1

if [[ $LOCAL == 1 ]]; then
  CONFIG_NAME=${RECIPE}_${DEMO}
  OUT_DIR=${OUT_DIR:-outputs/${RECIPE}_local${SUFFIX}}
  mkdir -p "$OUT_DIR"
  export NPO_DEMO_DIR; NPO_DEMO_DIR=$(cd "$OUT_DIR" && pwd)
  "$PYTHON" -m recipes.demo.tiny_model "$NPO_DEMO_DIR/model" >/dev/null
  "$PYTHON" -m recipes.demo.shapes_dataset "$NPO_DEMO_DIR/data" --train-size 64 --val-size 8 >/dev/null
  # CPU platform plugin (verl has none) and reuse of the FSDP engine registered for cuda.
  export VERL_USE_EXTERNAL_MODULES=recipes.cpu.platform VERL_PLATFORM=cpu VERL_ENGINE_DEVICE=cuda
  # vLLM on CPU: 1 GiB of KV cache, and no core pinning (the default reserves one of the cores for itself).
  export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-nobind}
  ARGS=()
else
  : "${MODEL_PATH:?set MODEL_PATH (e.g. a local Qwen3-VL-8B-Instruct folder)}"
  : "${TRAIN_FILES:?set TRAIN_FILES (verl parquet, e.g. from python -m data_prep mmfinereason)}"
  : "${VAL_FILES:?set VAL_FILES}"
  ARGS=(
    data.train_files="$TRAIN_FILES" data.val_files="$VAL_FILES" actor_rollout_ref.model.path="$MODEL_PATH"
    trainer.n_gpus_per_node="${GPUS_PER_NODE:-8}" trainer.nnodes="${NNODES:-1}"
  )
fi

echo "[run_npo] recipe=$RECIPE local=$LOCAL rollout=$ROLLOUT config=$CONFIG_DIR/$CONFIG_NAME.yaml python=$PYTHON"
exec "$PYTHON" -m recipes.npo.main_npo --config-path "$(pwd)/$CONFIG_DIR" --config-name "$CONFIG_NAME" "${ARGS[@]}" "$@"
