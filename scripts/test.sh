#!/usr/bin/env bash
# Set up both CPU environments (if needed), lint, and run the whole test suite, slow tests included. The suite runs
# in .venv; the vLLM-path tests (tests/integration/test_npo_vllm_cpu_e2e.py) start their runs with .venv-vllm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_cpu.sh
bash scripts/setup_cpu.sh --vllm
.venv/bin/ruff check .
.venv/bin/ruff format --check .
NPO_VLLM_PYTHON="$(pwd)/.venv-vllm/bin/python" .venv/bin/python -m pytest "$@"
