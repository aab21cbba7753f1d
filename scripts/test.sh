#!/usr/bin/env bash
# Set up both CPU environments (if needed), lint, and run the whole test suite, slow tests included. The suite runs
# in .venv (plus slurm-wlm, munge and shellcheck from apt); the vLLM-path tests
# (tests/integration/test_npo_vllm_cpu_e2e.py) start their runs with .venv-vllm.
#
#   bash scripts/test.sh [--fast] [pytest args...]
#
# --fast: the contributor's tier, everything but the tests marked slow (the end-to-end runs through Ray, the FSDP
# actor, vLLM or Slurm); it needs only .venv. CI runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
FAST=0
if [[ ${1:-} == --fast ]]; then
  FAST=1
  shift
  set -- -m "not slow" "$@"
fi
bash scripts/setup_cpu.sh
if ((!FAST)); then
  bash scripts/setup_cpu.sh --vllm
fi
# tests/slurm starts a real 2-node Slurm (Debian's slurm-wlm + munge), each node a network namespace (iproute2);
# the linter checks the launch scripts
PACKAGES=(slurm-wlm munge shellcheck iproute2)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v shellcheck >/dev/null ||
  ! command -v ip >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -qq "${PACKAGES[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${PACKAGES[@]}" >/dev/null; }
  else
    echo "test.sh: install ${PACKAGES[*]} for the Slurm launcher tests (they are skipped without them)" >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Test files run two at a time (NPO_TEST_WORKERS): an end-to-end run leaves a core idle much of the time (Ray start-up,
# generation), so two of them take about half the wall time of one after the other on 2 cores.
NPO_VLLM_PYTHON="$(pwd)/.venv-vllm/bin/python" .venv/bin/python -m pytest -n "${NPO_TEST_WORKERS:-2}" --dist loadfile "$@"
