#!/usr/bin/env bash
# Create .venv with the CPU stack: torch 2.14.1 + torchvision 0.29.1 (needed by the Qwen-VL processors), then this
# project (editable) with verl 0.9.1, all pinned by scripts/constraints-cpu.txt. Idempotent: re-running with an
# unchanged pyproject.toml and constraints file is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
CONSTRAINTS=scripts/constraints-cpu.txt
stamp="$VENV/.npo-setup-$(cat pyproject.toml "$CONSTRAINTS" | sha1sum | cut -c1-12)"
if [[ -f "$stamp" ]]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi
[[ -d "$VENV" ]] || "$PYTHON" -m venv "$VENV"
pip_install() {  # pip's exit status, without this machine's noisy "Location ... is ignored" warnings
  local log rc=0
  log=$(mktemp)
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1 || rc=$?
  grep -v "^WARNING: Location" "$log" || true
  rm -f "$log"
  return "$rc"
}
echo "[setup] installing torch==2.14.1 torchvision==0.29.1"
pip_install -c "$CONSTRAINTS" torch==2.14.1 torchvision==0.29.1
echo "[setup] installing npo-verl (editable) with dev extras, pinned by $CONSTRAINTS"
pip_install -c "$CONSTRAINTS" -e ".[dev]"
"$VENV/bin/python" -c "import torch, torchvision, verl, transformers; print('[setup] torch', torch.__version__, '| verl', verl.__version__, '| transformers', transformers.__version__)"
rm -f "$VENV"/.npo-setup-*
touch "$stamp"
