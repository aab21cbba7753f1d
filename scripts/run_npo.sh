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
  inside an allocation (the batch script)      start Ray on every node (head on the first), wait for all of them,
                                               run the recipe on the head, tear Ray down on exit
  inside salloc on a login node                the same, moved onto the allocation's first node with srun
  --local, or no Slurm                         run on this machine (verl starts its own Ray)

What to run (environment variable in brackets):
  --recipe NAME        npo | grpo | luffy | exgrpo | rlep (recipes/NAME/config)             [RECIPE, default npo]
  --config FILE        the recipe YAML to run (default recipes/NAME/config/NAME_trainer.yaml) [CONFIG]
  --demo               the tiny CPU config (NAME_cpu_demo.yaml), its model and data built locally; --local alone
                       implies it unless --config or MODEL_PATH is given
  --rollout R          with --demo: hf_cpu (default, .venv) | vllm (.venv-vllm)
  --local              this machine only, no Slurm
  --out-dir DIR        run folder: checkpoints/ and logs/ below it        [OUT_DIR, default outputs/<recipe>[_local]]
  --ckpt-dir DIR       checkpoints (a filesystem every node sees)             [CKPT_DIR, default OUT_DIR/checkpoints]
  --log-dir DIR        the job's output and one Ray log per node                  [LOG_DIR, default OUT_DIR/logs]
  --dry-run            print the batch script and the commands instead of running them (creates nothing)
  -h, --help           this text
  GPU recipes also need MODEL_PATH, TRAIN_FILES and VAL_FILES (a model folder and verl parquet data).

Resources (Slurm):
  --nodes N            nodes                                                               [NNODES, default 1]
  --gpus-per-node G    GPUs per node = training ranks per node (the demo: logical GPU slots, default 1)
                                                                                       [GPUS_PER_NODE, default 8]
  --cpus-per-node C    CPUs per node (--cpus-per-task) [CPUS_PER_NODE; GPU default: the whole node; demo: 1]
  --mem M              memory per node, Slurm syntax; 0 = all of it            [MEM_PER_NODE; GPU default 0; demo 4G]
  --exclusive | --shared   whole nodes or not                             [EXCLUSIVE=1|0; GPU default 1; demo 0]
  --time T             time limit                                                      [SLURM_TIME, default 48:00:00]
  --partition P        partition                                                                [SLURM_PARTITION]
  --stop-lead S        seconds before the time limit at which USR1 asks the trainer to checkpoint and stop
                                                                                         [STOP_LEAD_S, default 600]
Network (Slurm):
  --iface NAME         the interface Ray, Gloo and NCCL use on every node (also sets GLOO_SOCKET_IFNAME and
                       NCCL_SOCKET_IFNAME); default: each node's Slurm NodeAddr                             [NET_IFACE]
  --ray-port PORT      first port of the job's block of Ray ports (GCS, client, node and object managers, agents,
                       metrics, workers); default: a block chosen from the job id, the next one if it is busy [RAY_PORT]
  --ray-auth MODE      token (a fresh per-job token in a 0600 file, Slurm's default) | disabled  [RAY_AUTH_MODE]
  Also: PYTHON (interpreter; GPU runs use python3 from PATH, the demo its .venv), RAY_WAIT_S (join timeout, 300),
  RAY_TMPDIR (node-local folder for Ray's session files, default /tmp), SBATCH_EXTRA (more sbatch options).

Stopping: Slurm sends USR1 STOP_LEAD_S before the time limit (or: scancel --batch --signal=USR1 JOB). The trainer then
checkpoints at its next step boundary, or between two collected guide batches or probed candidates of a fork, exits
with status 75, and the job requeues itself and resumes (trainer.resume_mode=auto). A plain scancel or the time
limit itself sends TERM to every process at once: nothing is checkpointed then; the run resumes from its last
checkpoint when started again.
EOF
}

PASS_ARGS=()  # the command line as the batch job re-runs it (without --dry-run)
for arg in "$@"; do [[ $arg == --dry-run ]] || PASS_ARGS+=("$arg"); done
RECIPE=${RECIPE:-npo}
CONFIG=${CONFIG:-}
NODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-}
CPUS_PER_NODE=${CPUS_PER_NODE:-}
MEM_PER_NODE=${MEM_PER_NODE:-}
EXCLUSIVE=${EXCLUSIVE:-}
OUT_DIR=${OUT_DIR:-}
CKPT_DIR=${CKPT_DIR:-}
LOG_DIR=${LOG_DIR:-}
RAY_PORT=${RAY_PORT:-}
NET_IFACE=${NET_IFACE:-}
STOP_LEAD_S=${STOP_LEAD_S:-600}
SLURM_TIME=${SLURM_TIME:-48:00:00}
SLURM_PARTITION=${SLURM_PARTITION:-}
LOCAL=0 DEMO=0 DRY_RUN=0 ROLLOUT=hf_cpu
REQUEUE_EXIT_CODE=75  # recipes/npo/preemption.py
PORT_BLOCK=400 PORT_FIRST=20000 PORT_SLOTS=30  # per-job Ray port blocks in 20000-31999: above Ray's defaults, below
# the kernel's ephemeral ports
die() { echo "[run_npo] error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --local) LOCAL=1; shift ;;
    --demo) DEMO=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --exclusive) EXCLUSIVE=1; shift ;;
    --shared) EXCLUSIVE=0; shift ;;
    --rollout) ROLLOUT=${2:?--rollout needs hf_cpu or vllm}; shift 2 ;;
    --recipe) RECIPE=${2:?--recipe needs a name}; shift 2 ;;
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
    --gpus-per-node) GPUS_PER_NODE=${2:?--gpus-per-node needs a number}; shift 2 ;;
    --cpus-per-node) CPUS_PER_NODE=${2:?--cpus-per-node needs a number}; shift 2 ;;
    --mem) MEM_PER_NODE=${2:?--mem needs a size}; shift 2 ;;
    --out-dir) OUT_DIR=${2:?--out-dir needs a folder}; shift 2 ;;
    --ckpt-dir) CKPT_DIR=${2:?--ckpt-dir needs a folder}; shift 2 ;;
    --log-dir) LOG_DIR=${2:?--log-dir needs a folder}; shift 2 ;;
    --iface) NET_IFACE=${2:?--iface needs an interface name}; shift 2 ;;
    --ray-port) RAY_PORT=${2:?--ray-port needs a number}; shift 2 ;;
    --ray-auth) RAY_AUTH_MODE=${2:?--ray-auth needs token or disabled}; shift 2 ;;
    --stop-lead) STOP_LEAD_S=${2:?--stop-lead needs seconds}; shift 2 ;;
    --time) SLURM_TIME=${2:?--time needs a value}; shift 2 ;;
    --partition) SLURM_PARTITION=${2:?--partition needs a name}; shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
OVERRIDES=("$@")
[[ $LOCAL == 1 && -z $CONFIG && -z ${MODEL_PATH:-} ]] && DEMO=1
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_count "$NODES" || die "--nodes must be a positive number, got '$NODES'"
[[ -z $GPUS_PER_NODE ]] || is_count "$GPUS_PER_NODE" || die "--gpus-per-node must be a positive number"
[[ -z $CPUS_PER_NODE ]] || is_count "$CPUS_PER_NODE" || die "--cpus-per-node must be a positive number"
is_count "$STOP_LEAD_S" || die "--stop-lead must be a positive number of seconds"
[[ -z $RAY_PORT ]] || { is_count "$RAY_PORT" && ((RAY_PORT + PORT_BLOCK <= 65536)); } || die "--ray-port out of range"

# --- what to run -------------------------------------------------------------------------------------------------
[[ -d recipes/$RECIPE/config ]] || die "no recipe '$RECIPE' (expected recipes/$RECIPE/config/)"
case "$ROLLOUT" in
  hf_cpu) VENV_DIR=.venv SUFFIX='' ROLLOUT_OVERRIDES=() ;;
  vllm) VENV_DIR=.venv-vllm SUFFIX=_vllm ROLLOUT_OVERRIDES=(+demo_rollout=vllm) ;;
  *) die "--rollout must be hf_cpu or vllm, got '$ROLLOUT'" ;;
esac
[[ $DEMO == 0 && $ROLLOUT != hf_cpu ]] && die "--rollout only applies to --demo (GPU recipes use vLLM)"
if [[ -z $CONFIG ]]; then
  if [[ $DEMO == 1 ]]; then CONFIG=recipes/$RECIPE/config/${RECIPE}_cpu_demo.yaml; else CONFIG=recipes/$RECIPE/config/${RECIPE}_trainer.yaml; fi
fi
[[ -f $CONFIG ]] || die "no config file $CONFIG"
CONFIG=$(realpath "$CONFIG")
if [[ $DEMO == 1 ]]; then
  GPUS_PER_NODE=${GPUS_PER_NODE:-1}  # logical GPU slots: verl's resource check counts GPUs only
  RAY_NUM_CPUS=${RAY_NUM_CPUS:-$((4 * GPUS_PER_NODE))}
  # a Ray started by verl on one machine: one logical GPU slot per training rank
  DEMO_RAY=(++ray_kwargs.ray_init.num_gpus="$GPUS_PER_NODE" ++ray_kwargs.ray_init.num_cpus="$RAY_NUM_CPUS")
  CPUS_PER_NODE=${CPUS_PER_NODE:-1} MEM_PER_NODE=${MEM_PER_NODE:-4G} EXCLUSIVE=${EXCLUSIVE:-0}
  OUT_DIR=${OUT_DIR:-outputs/${RECIPE}_local${SUFFIX}}
  if [[ -z ${PYTHON:-} && -x $VENV_DIR/bin/python ]]; then PYTHON=$ROOT/$VENV_DIR/bin/python; fi
else
  GPUS_PER_NODE=${GPUS_PER_NODE:-8}
  RAY_NUM_CPUS=${RAY_NUM_CPUS:-}  # default: the CPUs Slurm gave the job on each node
  MEM_PER_NODE=${MEM_PER_NODE:-0} EXCLUSIVE=${EXCLUSIVE:-1}
  OUT_DIR=${OUT_DIR:-outputs/${RECIPE}}
fi
PYTHON=${PYTHON:-$(command -v python3 || true)}
[[ -n $PYTHON ]] || die "no python3 on PATH (set PYTHON)"
OUT_DIR=$(realpath -m "$OUT_DIR")
CKPT_DIR=$(realpath -m "${CKPT_DIR:-$OUT_DIR/checkpoints}")
LOG_DIR=$(realpath -m "${LOG_DIR:-$OUT_DIR/logs}")
export WANDB_MODE=${WANDB_MODE:-disabled} TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=1

if [[ $LOCAL == 0 && -n ${SLURM_JOB_ID:-} && -z ${SLURMD_NODENAME:-} ]]; then
  MODE=salloc  # an interactive allocation whose shell runs on a login node
elif [[ $LOCAL == 0 && -n ${SLURM_JOB_ID:-} ]]; then
  MODE=slurm-allocation
  NODES=${SLURM_JOB_NUM_NODES:-$NODES}
elif [[ $LOCAL == 0 ]] && command -v sbatch >/dev/null; then
  MODE=submit
else
  MODE=local
fi
if [[ $MODE == local ]]; then
  # verl's ray.init starts a private cluster; Ray 2.60 turns token authentication on for it when ~/.ray/auth_token
  # exists (any earlier local Ray leaves one), which nothing here needs
  export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
else
  export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
fi
[[ $RAY_AUTH_MODE == token || $RAY_AUTH_MODE == disabled ]] || die "--ray-auth must be token or disabled"

banner() {
  local rollout=$ROLLOUT
  [[ $DEMO == 1 ]] || rollout="from the config (vLLM)"
  echo "[run_npo] ---------------------------------------------------------------"
  echo "[run_npo] mode=$MODE recipe=$RECIPE demo=$DEMO rollout=$rollout"
  echo "[run_npo] config=$CONFIG"
  echo "[run_npo] nodes=$NODES gpus_per_node=$GPUS_PER_NODE python=$PYTHON ray_auth=$RAY_AUTH_MODE"
  echo "[run_npo] out=$OUT_DIR checkpoints=$CKPT_DIR logs=$LOG_DIR"
  if [[ -n ${SLURM_JOB_ID:-} ]]; then echo "[run_npo] job=$SLURM_JOB_ID restart=${SLURM_RESTART_COUNT:-0} nodelist=${SLURM_JOB_NODELIST:-}"; fi
  echo "[run_npo] overrides: ${OVERRIDES[*]:-(none)}"
  echo "[run_npo] ---------------------------------------------------------------"
}

# --- submit: this command as a batch job -------------------------------------------------------------------------
PINNED_VARS=(MODEL_PATH TRAIN_FILES VAL_FILES RAY_TMPDIR RAY_WAIT_S RAY_NUM_CPUS WANDB_MODE WANDB_API_KEY HF_HOME)
pinned_environment() {  # what the job needs from this shell, so it runs the same where sbatch exports nothing
  local name extra
  mapfile -t extra < <(compgen -v | grep -E '^(NCCL_|GLOO_|VLLM_|HF_|TRANSFORMERS_)' || true)
  printf 'export PATH=%q OUT_DIR=%q CKPT_DIR=%q LOG_DIR=%q PYTHON=%q\n' "$PATH" "$OUT_DIR" "$CKPT_DIR" "$LOG_DIR" "$PYTHON"
  printf 'export GPUS_PER_NODE=%q STOP_LEAD_S=%q RAY_AUTH_MODE=%q\n' "$GPUS_PER_NODE" "$STOP_LEAD_S" "$RAY_AUTH_MODE"
  [[ -z $RAY_PORT ]] || printf 'export RAY_PORT=%q\n' "$RAY_PORT"
  [[ -z $NET_IFACE ]] || printf 'export NET_IFACE=%q\n' "$NET_IFACE"
  for name in "${PINNED_VARS[@]}" "${extra[@]}"; do
    if [[ -n ${!name:-} ]]; then printf 'export %s=%q\n' "$name" "${!name}"; fi
  done
}

batch_script() {
  local quoted
  printf -v quoted ' %q' "${PASS_ARGS[@]}"
  echo "#!/bin/bash"
  echo "#SBATCH --job-name=npo-$RECIPE"
  echo "#SBATCH --nodes=$NODES --ntasks-per-node=1"
  if [[ $EXCLUSIVE == 1 ]]; then echo "#SBATCH --exclusive"; fi
  if [[ -n $CPUS_PER_NODE ]]; then echo "#SBATCH --cpus-per-task=$CPUS_PER_NODE"; fi
  echo "#SBATCH --mem=$MEM_PER_NODE"
  if [[ $DEMO == 0 ]]; then echo "#SBATCH --gpus-per-node=$GPUS_PER_NODE"; fi
  echo "#SBATCH --time=$SLURM_TIME --requeue --open-mode=append --signal=B:USR1@$STOP_LEAD_S"
  echo "#SBATCH --output=$LOG_DIR/slurm-%j.out"
  if [[ -n $SLURM_PARTITION ]]; then echo "#SBATCH --partition=$SLURM_PARTITION"; fi
  echo "# every path and setting is fixed here, so a requeued job runs the same command"
  pinned_environment
  echo "cd $(printf %q "$ROOT")"
  echo "exec bash scripts/run_npo.sh$quoted"
}

submit() {
  local script job
  script="$LOG_DIR/submit-$(date +%Y%m%d-%H%M%S).sbatch"
  if [[ $DRY_RUN == 1 ]]; then
    echo "# batch script (would be written to $script and submitted with: sbatch --parsable ${SBATCH_EXTRA:-} $script)"
    batch_script
    echo "# inside the allocation:"
    plan
    return
  fi
  mkdir -p "$LOG_DIR"
  batch_script >"$script"
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
    # a private Ray on this node for the collection (the job's own, with its token, starts later)
    RAY_AUTH_MODE=disabled "$PYTHON" -m recipes.rlep.collect --config-path "$(dirname "$CONFIG")" --config-name "$(basename "$CONFIG" .yaml)" \
      ++ray_kwargs.ray_init.address=local trainer.n_gpus_per_node="$GPUS_PER_NODE" "${DEMO_RAY[@]}" \
      "${ROLLOUT_OVERRIDES[@]}" "${OVERRIDES[@]}"
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
  ENTRY+=(trainer.default_local_dir="$CKPT_DIR" "${ROLLOUT_OVERRIDES[@]}")
  if [[ $MODE == slurm-allocation ]]; then
    # connect to the cluster started here (ray.init may not size it), resume whatever a previous run of the job left
    ENTRY+=(trainer.nnodes="$NODES" trainer.n_gpus_per_node="$GPUS_PER_NODE" trainer.resume_mode=auto
      ++ray_kwargs.ray_init.num_cpus=null ++ray_kwargs.ray_init.num_gpus=null)
  else
    # a cluster of its own, even when another Ray runs on this machine (ray.init would join that one)
    ENTRY+=(++ray_kwargs.ray_init.address=local trainer.nnodes=1 trainer.n_gpus_per_node="$GPUS_PER_NODE")
    if [[ $DEMO == 1 ]]; then ENTRY+=("${DEMO_RAY[@]}"); fi
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
  if [[ -n $NET_IFACE ]]; then
    export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-$NET_IFACE} NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-$NET_IFACE}
  fi
}

# --- inside an allocation: Ray on every node -----------------------------------------------------------------------
RAY_PIDS=()
ENTRY_PID=
TOKEN_FILE=
HELPER=()  # srun options of the short steps beside Ray (they share the nodes and hold no GPU)

on_each_node() {  # a short step with one task on every node of the allocation
  srun "${HELPER[@]}" --nodes="$NODES" --ntasks="$NODES" --ntasks-per-node=1 "$@"
}

expand_counts() {  # "72(x2),48" (SLURM_JOB_CPUS_PER_NODE) -> one count per node
  local part i
  for part in ${1//,/ }; do
    if [[ $part =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
      for ((i = 0; i < BASH_REMATCH[2]; i++)); do echo "${BASH_REMATCH[1]}"; done
    else
      echo "$part"
    fi
  done
}

node_address() {  # the address Slurm itself reaches NODE at (NodeAddr), resolved when it is a name
  local addr
  addr=$(scontrol show node "$1" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
  [[ -n $addr ]] || addr=$1
  if [[ ! $addr =~ ^[0-9]+(\.[0-9]+){3}$ ]]; then addr=$(getent ahostsv4 "$addr" | awk 'NR == 1 {print $1}'); fi
  echo "$addr"
}

resolve_addresses() {  # NODE_ADDR[node] and NODE_IFACE[node]: the address (and its interface) each node's Ray, Gloo
  # and NCCL use; checked on the node itself
  local node addr seen line
  declare -gA NODE_ADDR=() NODE_IFACE=()
  if [[ -z $NET_IFACE ]]; then
    for node in "${NODE_LIST[@]}"; do NODE_ADDR[$node]=$(node_address "$node"); done
  fi
  # one line per node: its Slurm name, then IFACE=ADDRESS for each IPv4 address (on NET_IFACE only, when given)
  # shellcheck disable=SC2016  # expanded on each node
  seen=$(on_each_node bash -c \
    'printf "%s " "$SLURMD_NODENAME"; ip -4 -o addr show $0 | awk "$1"; echo' "${NET_IFACE:+dev $NET_IFACE}" \
    '{sub(/\/.*/, "", $4); printf "%s=%s ", $2, $4}') || die "could not list the nodes' addresses (srun failed): $seen"
  for node in "${NODE_LIST[@]}"; do
    line=$(grep "^$node " <<<"$seen" || true)
    line=${line#* }
    if [[ -n $NET_IFACE ]]; then
      addr=$(awk '{print $1}' <<<"$line")
      [[ -n $addr ]] || die "node $node has no IPv4 address on interface $NET_IFACE"
      NODE_ADDR[$node]=${addr#*=}
    else
      addr=${NODE_ADDR[$node]}
      if [[ -z $addr || $addr == 127.* || " $line" != *"=$addr "* ]]; then
        die "node $node: its Slurm NodeAddr resolves to '${addr:-nothing}', which is not one of its own addresses" \
          "($line); pass --iface (or NET_IFACE) to name the network Ray should use"
      fi
    fi
    addr=$(tr ' ' '\n' <<<"$line" | grep "=${NODE_ADDR[$node]}$" | head -n 1)
    NODE_IFACE[$node]=${addr%%=*}
  done
}

ray_ports() {  # RAY_PORT_ARGS for the block starting at $1: fixed ports first, then the worker range
  local base=$1
  PORTS_FIXED=("$base" $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)) $((base + 5)) $((base + 6)) $((base + 7)))
  RAY_PORT_ARGS=(--ray-client-server-port=$((base + 1)) --node-manager-port=$((base + 2))
    --object-manager-port=$((base + 3)) --runtime-env-agent-port=$((base + 4)) --dashboard-agent-grpc-port=$((base + 5))
    --dashboard-agent-listen-port=$((base + 6)) --metrics-export-port=$((base + 7))
    --min-worker-port=$((base + 10)) --max-worker-port=$((base + PORT_BLOCK - 1)))
}

busy_ports() {  # the fixed ports of the block at $1 that some node cannot bind ("node:port" words; in a subshell)
  ray_ports "$1"
  # shellcheck disable=SC2016  # expanded on each node
  on_each_node "$PYTHON" -c '
import os, socket, sys
node = os.environ.get("SLURMD_NODENAME", "?")
for port in map(int, sys.argv[1:]):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Ray binds: closed connections do not count
        try:
            s.bind(("", port))
        except OSError:
            print(f"{node}:{port}")
' "${PORTS_FIXED[@]}" | tr '\n' ' '
}

choose_ports() {  # PORT_BASE: --ray-port as given, or a block from the job id (the next free one if busy)
  local busy tries
  if [[ -n $RAY_PORT ]]; then
    busy=$(busy_ports "$RAY_PORT")
    [[ -z $busy ]] || die "Ray port block at $RAY_PORT is in use ($busy); --ray-port or RAY_PORT picks another"
    PORT_BASE=$RAY_PORT
    ray_ports "$PORT_BASE"
    return
  fi
  for ((tries = 0; tries < 8; tries++)); do
    PORT_BASE=$((PORT_FIRST + ((SLURM_JOB_ID + tries) % PORT_SLOTS) * PORT_BLOCK))
    busy=$(busy_ports "$PORT_BASE")
    if [[ -z $busy ]]; then
      ray_ports "$PORT_BASE"
      return 0
    fi
    echo "[run_npo] Ray port block at $PORT_BASE is in use ($busy); trying the next one"
  done
  die "no free block of Ray ports after 8 tries; pass --ray-port"
}

ray_node_command() {  # ray_node_command NODE INDEX: RAY_STEP, the srun step of the node's `ray start`
  local temp
  temp=${RAY_TMPDIR:-/tmp}/npo-ray-${SLURM_CLUSTER_NAME:-slurm}-$SLURM_JOB_ID-$1  # node-local; Ray's sockets are short
  # Gloo and NCCL pick an interface from the hostname (which may resolve to loopback); pin the node's own
  RAY_STEP=(srun --overlap --nodes=1 --ntasks=1 --cpus-per-task="${NODE_CPUS[$2]}" --mem=0 -w "$1"
    --output="$LOG_DIR/ray-$1-%j.log" env "GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-${NODE_IFACE[$1]}}"
    "NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-${NODE_IFACE[$1]}}" "$(dirname "$PYTHON")/ray" start --block --num-gpus="$GPUS_PER_NODE" --resources="{\"npo_node:$1\": 1}"
    --num-cpus="${RAY_NUM_CPUS:-${NODE_CPUS[$2]}}" --node-ip-address="${NODE_ADDR[$1]}" --temp-dir="$temp"
    --disable-usage-stats "${RAY_PORT_ARGS[@]}")
  if [[ $2 == 0 ]]; then
    RAY_STEP+=(--head --port="$PORT_BASE" --include-dashboard=false)
  else
    RAY_STEP+=(--address="$HEAD_IP:$PORT_BASE")
  fi
}

wait_command() {  # WAIT: the wait until every node of NODE_LIST joined Ray at its address
  local node
  WAIT=("$PYTHON" scripts/ray_wait_nodes.py --address "$HEAD_IP:$PORT_BASE" --gpus-per-node "$GPUS_PER_NODE"
    --timeout "${RAY_WAIT_S:-300}" --nodes)
  for node in "${NODE_LIST[@]}"; do WAIT+=("$node=${NODE_ADDR[$node]}"); done
}

plan() {  # the allocation's commands, for --dry-run
  local i node
  MODE=slurm-allocation
  NODES=${SLURM_JOB_NUM_NODES:-$NODES}
  NODE_LIST=() NODE_CPUS=()
  for ((i = 1; i <= NODES; i++)); do NODE_LIST+=("NODE$i") NODE_CPUS+=("${CPUS_PER_NODE:-ALLOCATED_CPUS}"); done
  SLURM_JOB_ID=${SLURM_JOB_ID:-JOBID}
  declare -A NODE_ADDR=() NODE_IFACE=()
  for node in "${NODE_LIST[@]}"; do NODE_ADDR[$node]=${node}_ADDR NODE_IFACE[$node]=${NET_IFACE:-${node}_IFACE}; done
  HEAD_IP=${NODE_ADDR[NODE1]} PORT_BASE=${RAY_PORT:-$PORT_FIRST}
  ray_ports "$PORT_BASE"
  entry_command
  if [[ -n $NET_IFACE ]]; then
    echo "# addresses: the IPv4 address of $NET_IFACE on each node; GLOO_SOCKET_IFNAME=NCCL_SOCKET_IFNAME=$NET_IFACE"
  else
    echo "# addresses: the Slurm NodeAddr of each node (scontrol show node), resolved with getent, checked on the node"
  fi
  if [[ -n $RAY_PORT ]]; then
    echo "# ports: the block of $PORT_BLOCK from $RAY_PORT"
  else
    echo "# ports: the block of $PORT_BLOCK from $PORT_FIRST + (job id mod $PORT_SLOTS) x $PORT_BLOCK, the next if one is busy"
    echo "#        (shown below for a job id that is a multiple of $PORT_SLOTS)"
  fi
  echo "# CPUs: Ray's --num-cpus on each node is what Slurm allocated there (SLURM_JOB_CPUS_PER_NODE)${RAY_NUM_CPUS:+, overridden: $RAY_NUM_CPUS}"
  if [[ $RAY_AUTH_MODE == token ]]; then
    echo "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$LOG_DIR/.ray-token-$SLURM_JOB_ID  # fresh per job, mode 0600"
  fi
  echo "# stop: USR1 ${STOP_LEAD_S}s before the time limit -> touch $CKPT_DIR/npo_stop_request; exit status $REQUEUE_EXIT_CODE -> scontrol requeue"
  for i in "${!NODE_LIST[@]}"; do
    ray_node_command "${NODE_LIST[$i]}" "$i"
    echo "$(printf '%q ' "${RAY_STEP[@]}")&"
  done
  wait_command
  printf '%q ' "${WAIT[@]}"
  echo
  echo "RAY_ADDRESS=$HEAD_IP:$PORT_BASE $(printf '%q ' "${ENTRY[@]}")"
}

preflight() {
  local check=$CKPT_DIR/.run_npo_fs_check.$SLURM_JOB_ID bad gpus
  date >"$check"
  # shellcheck disable=SC2016  # expanded on each node
  bad=$(on_each_node bash -c 'test -s "$0" || echo "$SLURMD_NODENAME"' "$check" 2>&1) || true
  rm -f "$check"
  [[ -z $bad ]] || die "checkpoint folder $CKPT_DIR is not shared with: $bad (use --ckpt-dir on a shared filesystem)"
  if [[ $DEMO == 0 ]]; then
    # the GPUs this job may use: CUDA_VISIBLE_DEVICES when Slurm sets it (nvidia-smi lists every GPU of the node);
    # unlike the other short steps, this one must see the GPUs
    # shellcheck disable=SC2016  # expanded on each node
    gpus=$(srun --overlap --nodes="$NODES" --ntasks="$NODES" --ntasks-per-node=1 bash -c \
      'if [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then n=$(tr , "\n" <<<"$CUDA_VISIBLE_DEVICES" | grep -c .); else n=$(nvidia-smi -L 2>/dev/null | grep -c ^GPU); fi; echo "$SLURMD_NODENAME=$n"' 2>&1) || true
    bad=$(awk -F= -v want="$GPUS_PER_NODE" '$2 < want' <<<"$gpus" | tr '\n' ' ')
    [[ -z $bad ]] || die "fewer than $GPUS_PER_NODE GPUs on: $bad(--gpus-per-node, or ask Slurm for more)"
  fi
}

request_stop() {
  echo "[run_npo] USR1 received: asking the trainer to checkpoint and stop (at its next step boundary, or between two collected batches or probes of a fork)"
  touch "$CKPT_DIR/npo_stop_request"
}

on_term() {
  echo "[run_npo] TERM received (scancel, or the time limit itself): Slurm signals every process at once, so nothing is checkpointed now; the run resumes from its last checkpoint"
  exit 143
}

stop_entry() {
  [[ -n $ENTRY_PID ]] && kill -0 "$ENTRY_PID" 2>/dev/null || return 0
  kill -TERM "$ENTRY_PID" 2>/dev/null || true
  for _ in {1..30}; do kill -0 "$ENTRY_PID" 2>/dev/null || return 0; sleep 1; done
  kill -KILL "$ENTRY_PID" 2>/dev/null || true
}

teardown() {
  trap - USR1 TERM
  stop_entry
  if [[ ${#RAY_PIDS[@]} -gt 0 ]]; then
    echo "[run_npo] stopping Ray on ${#RAY_PIDS[@]} node(s)"
    kill -TERM "${RAY_PIDS[@]}" 2>/dev/null || true
    wait "${RAY_PIDS[@]}" 2>/dev/null || true
  fi
  [[ -z $TOKEN_FILE ]] || rm -f "$TOKEN_FILE"
}

start_auth() {
  [[ $RAY_AUTH_MODE == token ]] || return 0
  TOKEN_FILE=$LOG_DIR/.ray-token-$SLURM_JOB_ID  # on the shared filesystem: every node and the driver read it
  (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' >"$TOKEN_FILE")
  export RAY_AUTH_TOKEN_PATH=$TOKEN_FILE
}

watch() {  # watch PID: its exit status; a node whose Ray step ends meanwhile stops the wait at once, named
  local pid=$1 i status
  while kill -0 "$pid" 2>/dev/null; do
    for i in "${!RAY_PIDS[@]}"; do
      if ! kill -0 "${RAY_PIDS[$i]}" 2>/dev/null; then
        status=0
        wait "${RAY_PIDS[$i]}" || status=$?
        echo "[run_npo] error: Ray on node ${NODE_LIST[$i]} stopped (its step exited with status $status; see" \
          "$LOG_DIR/ray-${NODE_LIST[$i]}-$SLURM_JOB_ID.log); stopping the run" >&2
        unset "RAY_PIDS[$i]"
        return 1
      fi
    done
    sleep 2 &
    wait $! || true  # a trapped USR1 interrupts this wait, not the run
  done
  status=0
  wait "$pid" || status=$?
  return "$status"
}

run_in_allocation() {
  local i status=0
  mapfile -t NODE_LIST < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
  NODES=${#NODE_LIST[@]}
  mapfile -t NODE_CPUS < <(expand_counts "${SLURM_JOB_CPUS_PER_NODE:-1}")
  HELPER=(--overlap)
  [[ $DEMO == 1 ]] || HELPER+=(--gres=none)
  mkdir -p "$CKPT_DIR" "$LOG_DIR"
  rm -f "$CKPT_DIR/npo_stop_request"
  resolve_addresses
  HEAD_IP=${NODE_ADDR[${NODE_LIST[0]}]}
  choose_ports
  preflight
  start_auth
  echo "[run_npo] Ray head ${NODE_LIST[0]} at $HEAD_IP:$PORT_BASE (ports $PORT_BASE-$((PORT_BASE + PORT_BLOCK - 1))); nodes: $(for n in "${NODE_LIST[@]}"; do printf '%s=%s ' "$n" "${NODE_ADDR[$n]}"; done)"
  trap teardown EXIT
  trap request_stop USR1
  trap on_term TERM
  entry_command
  for i in "${!NODE_LIST[@]}"; do
    ray_node_command "${NODE_LIST[$i]}" "$i"
    "${RAY_STEP[@]}" &
    RAY_PIDS+=($!)
    [[ $i == 0 ]] && sleep "${RAY_HEAD_START_S:-5}"
  done
  wait_command
  "${WAIT[@]}" &
  i=$!
  watch "$i" || { kill "$i" 2>/dev/null || true; exit 1; }
  RAY_ADDRESS=$HEAD_IP:$PORT_BASE "${ENTRY[@]}" &
  ENTRY_PID=$!
  watch "$ENTRY_PID" || status=$?
  if [[ $status == "$REQUEUE_EXIT_CODE" ]]; then
    if [[ -n ${NPO_INTERACTIVE:-} ]]; then
      echo "[run_npo] the trainer stopped for requeue; run the same command again to resume"
      exit 0
    fi
    echo "[run_npo] the trainer stopped for requeue (exit status $status); requeueing job $SLURM_JOB_ID"
    trap - USR1 TERM  # the requeue signals this script too; the run is already stopped
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  return "$status"
}

banner
case "$MODE" in
  submit) submit ;;
  salloc)
    # an allocation's shell runs where salloc was called: move the launcher onto the allocation's first node
    [[ $DRY_RUN == 0 ]] || { plan; exit 0; }
    first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    echo "[run_npo] inside salloc on $(hostname -s): running the launcher on $first"
    NPO_INTERACTIVE=1 exec srun --overlap --nodes=1 --ntasks=1 -w "$first" bash scripts/run_npo.sh "${PASS_ARGS[@]}"
    ;;
  slurm-allocation)
    export_platform
    if [[ $DRY_RUN == 1 ]]; then plan; exit 0; fi
    [[ $DEMO == 1 ]] && prepare_demo
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
