#!/usr/bin/env bash
# Launch an NPO recipe (or a baseline) on verl 0.9.1: here, or on a Slurm cluster with a multi-node Ray bring-up.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

usage() {
  cat <<'EOF'
Usage: bash scripts/run_npo.sh [options] [hydra overrides...]

Where it runs:
  outside a Slurm allocation, sbatch on PATH   submit this command as a batch job; print the job id and log paths
  inside an allocation (sbatch's batch step)   start Ray on every node (head on the first), wait for all of them,
                                               run the recipe on the head, tear Ray down on exit
  --local, or no Slurm                         run on this machine (verl starts its own Ray)

Options (environment variable in brackets):
  --recipe NAME        npo | grpo | luffy | exgrpo | rlep (recipes/NAME/config)             [RECIPE, default npo]
  --config FILE        the recipe YAML to run (default recipes/NAME/config/NAME_trainer.yaml) [CONFIG]
  --demo               the tiny CPU config (NAME_cpu_demo.yaml), its model and data built locally; --local alone
                       implies it unless --config or MODEL_PATH is given
  --rollout R          with --demo: hf_cpu (default, .venv) | vllm (.venv-vllm)
  --local              this machine only, no Slurm
  --nodes N            nodes to allocate                                                    [NNODES, default 1]
  --gpus-per-node G    GPUs per node (the demo uses 1 logical GPU)                          [GPUS_PER_NODE, default 8]
  --out-dir DIR        run folder: checkpoints/ and logs/ below it        [OUT_DIR, default outputs/<recipe>[_local]]
  --ckpt-dir DIR       checkpoints (a filesystem every node sees)             [CKPT_DIR, default OUT_DIR/checkpoints]
  --log-dir DIR        the job's output and one Ray log per node                  [LOG_DIR, default OUT_DIR/logs]
  --ray-port PORT      Ray head port                                                      [RAY_PORT, default 6379]
  --time T             Slurm time limit                                                [SLURM_TIME, default 48:00:00]
  --partition P        Slurm partition                                                          [SLURM_PARTITION]
  --dry-run            print the batch script and the commands instead of running them
  -h, --help           this text
  Also: PYTHON (interpreter), RAY_WAIT_S (join timeout, 300), RAY_NUM_CPUS (CPUs per Ray node, Ray's count by
  default; 4 for the demo), STOP_LEAD_S (seconds before the time limit to stop and requeue, 300), SBATCH_EXTRA
  (more sbatch options), MODEL_PATH / TRAIN_FILES / VAL_FILES (GPU recipes: model and verl parquet data).

Preemption: SIGUSR1 (sent STOP_LEAD_S before the limit) or SIGTERM to the batch script asks the trainer to stop at
the next step boundary with a checkpoint; the job then requeues itself and resumes with trainer.resume_mode=auto.
EOF
}

PASS_ARGS=()  # the command line as the batch job re-runs it (without --dry-run)
for arg in "$@"; do [[ $arg == --dry-run ]] || PASS_ARGS+=("$arg"); done
RECIPE=${RECIPE:-npo}
CONFIG=${CONFIG:-}
NODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-}
OUT_DIR=${OUT_DIR:-}
CKPT_DIR=${CKPT_DIR:-}
LOG_DIR=${LOG_DIR:-}
RAY_PORT=${RAY_PORT:-6379}
SLURM_TIME=${SLURM_TIME:-48:00:00}
SLURM_PARTITION=${SLURM_PARTITION:-}
LOCAL=0 DEMO=0 DRY_RUN=0 ROLLOUT=hf_cpu
die() { echo "[run_npo] error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --local) LOCAL=1; shift ;;
    --demo) DEMO=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --rollout) ROLLOUT=${2:?--rollout needs hf_cpu or vllm}; shift 2 ;;
    --recipe) RECIPE=${2:?--recipe needs a name}; shift 2 ;;
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
    --gpus-per-node) GPUS_PER_NODE=${2:?--gpus-per-node needs a number}; shift 2 ;;
    --out-dir) OUT_DIR=${2:?--out-dir needs a folder}; shift 2 ;;
    --ckpt-dir) CKPT_DIR=${2:?--ckpt-dir needs a folder}; shift 2 ;;
    --log-dir) LOG_DIR=${2:?--log-dir needs a folder}; shift 2 ;;
    --ray-port) RAY_PORT=${2:?--ray-port needs a number}; shift 2 ;;
    --time) SLURM_TIME=${2:?--time needs a value}; shift 2 ;;
    --partition) SLURM_PARTITION=${2:?--partition needs a name}; shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
OVERRIDES=("$@")
[[ $LOCAL == 1 && -z $CONFIG && -z ${MODEL_PATH:-} ]] && DEMO=1

# --- what to run -------------------------------------------------------------------------------------------------
[[ -d recipes/$RECIPE/config ]] || die "no recipe '$RECIPE' (expected recipes/$RECIPE/config/)"
case "$ROLLOUT" in
  hf_cpu) DEMO_NAME=cpu_demo VENV_DIR=.venv SUFFIX= ;;
  vllm) DEMO_NAME=cpu_vllm_demo VENV_DIR=.venv-vllm SUFFIX=_vllm ;;
  *) die "--rollout must be hf_cpu or vllm, got '$ROLLOUT'" ;;
esac
[[ $DEMO == 0 && $ROLLOUT != hf_cpu ]] && die "--rollout only applies to --demo (GPU recipes use vLLM)"
if [[ -z $CONFIG ]]; then
  if [[ $DEMO == 1 ]]; then CONFIG=recipes/$RECIPE/config/${RECIPE}_${DEMO_NAME}.yaml; else CONFIG=recipes/$RECIPE/config/${RECIPE}_trainer.yaml; fi
fi
[[ -f $CONFIG ]] || die "no config file $CONFIG"
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")
if [[ $DEMO == 1 ]]; then
  GPUS_PER_NODE=${GPUS_PER_NODE:-1}  # a logical GPU slot: verl's resource check counts GPUs only
  RAY_NUM_CPUS=${RAY_NUM_CPUS:-$((4 * GPUS_PER_NODE))}
  OUT_DIR=${OUT_DIR:-outputs/${RECIPE}_local${SUFFIX}}
else
  GPUS_PER_NODE=${GPUS_PER_NODE:-8}
  RAY_NUM_CPUS=${RAY_NUM_CPUS:-}
  OUT_DIR=${OUT_DIR:-outputs/${RECIPE}}
fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
CKPT_DIR=${CKPT_DIR:-$OUT_DIR/checkpoints}
LOG_DIR=${LOG_DIR:-$OUT_DIR/logs}
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $VENV_DIR/bin/python ]]; then PYTHON=$ROOT/$VENV_DIR/bin/python; else PYTHON=$(command -v python3); fi
fi
export WANDB_MODE=${WANDB_MODE:-disabled} TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=1
# Ray 2.60 turns token authentication on when ray.init starts a cluster and leaves ~/.ray/auth_token behind; nodes
# started with ray start then reject clients. Off unless asked for (RAY_AUTH_MODE=token, with the token file shared).
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}

if [[ $LOCAL == 1 || -n ${SLURM_JOB_ID:-} ]] || ! command -v sbatch >/dev/null; then
  MODE=$([[ $LOCAL == 0 && -n ${SLURM_JOB_ID:-} ]] && echo slurm-allocation || echo local)
else
  MODE=submit
fi

banner() {
  echo "[run_npo] ---------------------------------------------------------------"
  echo "[run_npo] mode=$MODE recipe=$RECIPE demo=$DEMO rollout=$ROLLOUT"
  echo "[run_npo] config=$CONFIG"
  echo "[run_npo] nodes=$NODES gpus_per_node=$GPUS_PER_NODE ray_port=$RAY_PORT python=$PYTHON"
  echo "[run_npo] out=$OUT_DIR checkpoints=$CKPT_DIR logs=$LOG_DIR"
  if [[ -n ${SLURM_JOB_ID:-} ]]; then echo "[run_npo] job=$SLURM_JOB_ID restart=${SLURM_RESTART_COUNT:-0} nodelist=${SLURM_JOB_NODELIST:-}"; fi
  echo "[run_npo] overrides: ${OVERRIDES[*]:-(none)}"
  echo "[run_npo] ---------------------------------------------------------------"
}

# --- submit: this command as a batch job -------------------------------------------------------------------------
batch_script() {
  local quoted
  printf -v quoted ' %q' "${PASS_ARGS[@]}"
  echo "#!/bin/bash"
  echo "#SBATCH --job-name=npo-$RECIPE"
  echo "#SBATCH --nodes=$NODES --ntasks-per-node=1"
  if [[ $DEMO == 0 && $GPUS_PER_NODE -gt 0 ]]; then echo "#SBATCH --gpus-per-node=$GPUS_PER_NODE"; fi
  echo "#SBATCH --time=$SLURM_TIME --requeue --open-mode=append --signal=B:USR1@${STOP_LEAD_S:-300}"
  echo "#SBATCH --output=$LOG_DIR/slurm-%j.out"
  if [[ -n $SLURM_PARTITION ]]; then echo "#SBATCH --partition=$SLURM_PARTITION"; fi
  echo "# every path and setting is fixed here, so a requeued job runs the same command"
  printf 'export OUT_DIR=%q CKPT_DIR=%q LOG_DIR=%q RAY_PORT=%q GPUS_PER_NODE=%q PYTHON=%q\n' \
    "$OUT_DIR" "$CKPT_DIR" "$LOG_DIR" "$RAY_PORT" "$GPUS_PER_NODE" "$PYTHON"
  echo "cd $(printf %q "$ROOT")"
  echo "exec bash scripts/run_npo.sh$quoted"
}

submit() {
  mkdir -p "$LOG_DIR"
  local script
  script="$LOG_DIR/submit-$(date +%Y%m%d-%H%M%S).sbatch"
  if [[ $DRY_RUN == 1 ]]; then
    echo "# batch script (would be written to $script and submitted with: sbatch --parsable ${SBATCH_EXTRA:-} $script)"
    batch_script
    echo "# inside the allocation:"
    plan
    return
  fi
  batch_script >"$script"
  local job
  # shellcheck disable=SC2086  # SBATCH_EXTRA is a list of options
  job=$(sbatch --parsable ${SBATCH_EXTRA:-} "$script")
  job=${job%%;*}
  echo "[run_npo] submitted job $job ($script)"
  echo "[run_npo] job output: $LOG_DIR/slurm-$job.out; Ray logs: $LOG_DIR/ray-<node>-$job.log; checkpoints: $CKPT_DIR"
}

# --- the recipe's entry ------------------------------------------------------------------------------------------
prepare_demo() {
  export NPO_DEMO_DIR=$OUT_DIR
  "$PYTHON" -m recipes.demo.tiny_model "$NPO_DEMO_DIR/model" >/dev/null
  "$PYTHON" -m recipes.demo.shapes_dataset "$NPO_DEMO_DIR/data" --train-size 64 --val-size 8 >/dev/null
  if [[ $RECIPE == rlep && ! -s $NPO_DEMO_DIR/experience.jsonl ]]; then
    # RLEP replays an earlier run's successes: on the demo, the demo model's own (written once, then reused)
    echo "[run_npo] rlep: collecting $NPO_DEMO_DIR/experience.jsonl from the demo model"
    "$PYTHON" -m recipes.rlep.collect --config-path "$(dirname "$CONFIG")" --config-name "$(basename "$CONFIG" .yaml)" \
      ++ray_kwargs.ray_init.address=local trainer.n_gpus_per_node="$GPUS_PER_NODE" \
      ++ray_kwargs.ray_init.num_gpus="$GPUS_PER_NODE" ++ray_kwargs.ray_init.num_cpus="$RAY_NUM_CPUS" "${OVERRIDES[@]}"
  fi
}

entry_command() {
  ENTRY=("$PYTHON" -m recipes.npo.main_npo --config-path "$(dirname "$CONFIG")" --config-name "$(basename "$CONFIG" .yaml)")
  if [[ $DEMO == 0 ]]; then
    : "${MODEL_PATH:?set MODEL_PATH (e.g. a local Qwen3-VL-8B-Instruct folder)}"
    : "${TRAIN_FILES:?set TRAIN_FILES (verl parquet, e.g. from python -m data_prep mmfinereason)}"
    : "${VAL_FILES:?set VAL_FILES}"
    ENTRY+=(data.train_files="$TRAIN_FILES" data.val_files="$VAL_FILES" actor_rollout_ref.model.path="$MODEL_PATH")
  fi
  ENTRY+=(trainer.default_local_dir="$CKPT_DIR")
  if [[ $MODE == slurm-allocation ]]; then
    # connect to the cluster started here (ray.init may not size it), resume whatever a previous run of the job left
    ENTRY+=(trainer.nnodes="$NODES" trainer.n_gpus_per_node="$GPUS_PER_NODE" trainer.resume_mode=auto
      ++ray_kwargs.ray_init.num_cpus=null ++ray_kwargs.ray_init.num_gpus=null)
  else
    # a cluster of its own, even when another Ray runs on this machine (ray.init would join that one)
    ENTRY+=(++ray_kwargs.ray_init.address=local trainer.nnodes=1 trainer.n_gpus_per_node="$GPUS_PER_NODE")
    # the demo's Ray is started by verl: one logical GPU slot per training rank (verl counts GPUs only)
    if [[ $DEMO == 1 ]]; then ENTRY+=(++ray_kwargs.ray_init.num_gpus="$GPUS_PER_NODE" ++ray_kwargs.ray_init.num_cpus="$RAY_NUM_CPUS"); fi
  fi
  ENTRY+=("${OVERRIDES[@]}")
}

export_platform() {
  if [[ $DEMO == 1 ]]; then
    # CPU platform plugin (verl has none) and reuse of the FSDP engine registered for cuda
    export VERL_USE_EXTERNAL_MODULES=recipes.cpu.platform VERL_PLATFORM=cpu VERL_ENGINE_DEVICE=cuda
    # vLLM on CPU: 1 GiB of KV cache, and no core pinning (the default reserves one of the cores for itself)
    export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-nobind}
  fi
}

# --- inside an allocation: Ray on every node -----------------------------------------------------------------------
RAY_PIDS=()
STOP_REQUESTED=0

ray_node_command() {  # ray_node_command NODE head|worker
  local ray_bin
  ray_bin=$(dirname "$PYTHON")/ray
  RAY_NODE=("$ray_bin" start --block --num-gpus="$GPUS_PER_NODE" --resources="{\"npo_node:$1\": 1}")
  if [[ -n $RAY_NUM_CPUS ]]; then RAY_NODE+=(--num-cpus="$RAY_NUM_CPUS"); fi
  if [[ $2 == head ]]; then
    RAY_NODE+=(--head --node-ip-address="$HEAD_IP" --port="$RAY_PORT" --include-dashboard=false --disable-usage-stats)
  else
    RAY_NODE+=(--address="$HEAD_IP:$RAY_PORT")
  fi
}

plan() {
  local nodes=() i MODE=slurm-allocation
  if [[ -n ${SLURM_JOB_NODELIST:-} ]]; then
    mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
  else
    for ((i = 1; i <= NODES; i++)); do nodes+=("NODE$i"); done
  fi
  HEAD_IP=${HEAD_IP:-HEAD_IP}
  entry_command
  for i in "${!nodes[@]}"; do
    ray_node_command "${nodes[$i]}" "$([[ $i == 0 ]] && echo head || echo worker)"
    echo "srun --nodes=1 --ntasks=1 --overlap -w ${nodes[$i]} --output=$LOG_DIR/ray-${nodes[$i]}-%j.log $(printf '%q ' "${RAY_NODE[@]}")&"
  done
  echo "$PYTHON scripts/ray_wait_nodes.py --address $HEAD_IP:$RAY_PORT --nodes ${nodes[*]} --gpus-per-node $GPUS_PER_NODE --timeout ${RAY_WAIT_S:-300}"
  echo "RAY_ADDRESS=$HEAD_IP:$RAY_PORT $(printf '%q ' "${ENTRY[@]}")"
}

preflight() {
  local token=$CKPT_DIR/.run_npo_fs_check.$SLURM_JOB_ID bad gpus
  "$PYTHON" - "$HEAD_IP" "$RAY_PORT" <<'EOF' || die "Ray port $RAY_PORT on $HEAD_IP is in use (--ray-port or RAY_PORT to pick another)"
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Ray binds: closed connections do not count
    s.bind((sys.argv[1], int(sys.argv[2])))
EOF
  date >"$token"
  # shellcheck disable=SC2016  # expanded on each node
  bad=$(srun --nodes="$NODES" --ntasks="$NODES" --ntasks-per-node=1 --overlap \
    bash -c 'test -s "$0" || hostname -s' "$token" 2>&1) || true
  rm -f "$token"
  [[ -z $bad ]] || die "checkpoint folder $CKPT_DIR is not shared with: $bad (use --ckpt-dir on a shared filesystem)"
  if [[ $DEMO == 0 && $GPUS_PER_NODE -gt 0 ]]; then
    # shellcheck disable=SC2016  # expanded on each node
    gpus=$(srun --nodes="$NODES" --ntasks="$NODES" --ntasks-per-node=1 --overlap \
      bash -c 'echo "$(hostname -s)=$(nvidia-smi -L 2>/dev/null | grep -c ^GPU)"' 2>&1) || true
    bad=$(awk -F= -v want="$GPUS_PER_NODE" '$2 < want' <<<"$gpus" | tr '\n' ' ')
    [[ -z $bad ]] || die "fewer than $GPUS_PER_NODE GPUs on: $bad(--gpus-per-node, or ask Slurm for more)"
  fi
}

request_stop() {
  STOP_REQUESTED=1
  echo "[run_npo] $1 received: asking the trainer to checkpoint at the next step boundary and stop"
  touch "$CKPT_DIR/npo_stop_request"
}

teardown() {
  if [[ ${#RAY_PIDS[@]} -gt 0 ]]; then
    echo "[run_npo] stopping Ray on ${#NODE_LIST[@]} node(s)"
    kill -TERM "${RAY_PIDS[@]}" 2>/dev/null || true
    wait "${RAY_PIDS[@]}" 2>/dev/null || true
    # a killed head leaves /tmp/ray/ray_current_cluster behind, and a later plain ray.init() on that node would try
    # to join the dead cluster: remove it where it names ours
    # shellcheck disable=SC2016  # expanded on each node
    srun --nodes="$NODES" --ntasks="$NODES" --ntasks-per-node=1 --overlap bash -c \
      'f=/tmp/ray/ray_current_cluster; if [[ $(cat "$f" 2>/dev/null) == "$0" ]]; then rm -f "$f"; fi' \
      "$HEAD_IP:$RAY_PORT" || true
  fi
}

run_in_allocation() {
  mapfile -t NODE_LIST < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
  NODES=${#NODE_LIST[@]}
  HEAD_IP=${RAY_HEAD_IP:-$(hostname -I | awk '{print $1}')}  # the batch script runs on the first node
  mkdir -p "$CKPT_DIR" "$LOG_DIR"
  rm -f "$CKPT_DIR/npo_stop_request" "$CKPT_DIR/npo_stopped"
  preflight
  trap teardown EXIT
  trap 'request_stop USR1' USR1
  trap 'request_stop TERM' TERM
  entry_command
  for i in "${!NODE_LIST[@]}"; do
    ray_node_command "${NODE_LIST[$i]}" "$([[ $i == 0 ]] && echo head || echo worker)"
    srun --nodes=1 --ntasks=1 --overlap -w "${NODE_LIST[$i]}" --output="$LOG_DIR/ray-${NODE_LIST[$i]}-%j.log" \
      "${RAY_NODE[@]}" &
    RAY_PIDS+=($!)
    [[ $i == 0 ]] && sleep "${RAY_HEAD_START_S:-5}"
  done
  "$PYTHON" scripts/ray_wait_nodes.py --address "$HEAD_IP:$RAY_PORT" --nodes "${NODE_LIST[@]}" \
    --gpus-per-node "$GPUS_PER_NODE" --timeout "${RAY_WAIT_S:-300}" || exit 1
  RAY_ADDRESS=$HEAD_IP:$RAY_PORT "${ENTRY[@]}" &
  local entry=$! status
  # a trapped signal interrupts wait (status > 128); the trainer is still running towards its next step boundary
  set +e
  wait "$entry"; status=$?
  while [[ $status -gt 128 ]] && kill -0 "$entry" 2>/dev/null; do wait "$entry"; status=$?; done
  set -e
  if [[ $STOP_REQUESTED == 1 && -f $CKPT_DIR/npo_stopped ]]; then
    echo "[run_npo] stopped after step $(cat "$CKPT_DIR/npo_stopped"); requeueing job $SLURM_JOB_ID"
    trap - USR1 TERM  # the requeue signals this script too; the run is already stopped
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  return "$status"
}

banner
case "$MODE" in
  submit) submit ;;
  slurm-allocation)
    export_platform
    [[ $DEMO == 1 ]] && prepare_demo
    if [[ $DRY_RUN == 1 ]]; then plan; exit 0; fi
    run_in_allocation
    ;;
  local)
    export_platform
    entry_command
    if [[ $DRY_RUN == 1 ]]; then printf '%q ' "${ENTRY[@]}"; echo; exit 0; fi
    [[ $DEMO == 1 ]] && prepare_demo
    exec "${ENTRY[@]}"
    ;;
esac
