#!/usr/bin/env bash
# One prepared GPU check, under 8 minutes on one H100/H200-class GPU (see gpu_check.py):
# supernet and final-network steps (images/s, TFLOP/s, peak memory; bf16, channels_last,
# compile off and on), rnn tokens/s, and a 2-epoch micro search and final training on random
# CIFAR-10-shaped data, projected to the paper's 150 and 630 epochs. A markdown report goes
# to stdout, progress to stderr.
#
#   bash benchmarks/gpu_check.sh                # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --dry-run      # toy sizes on the CPU: checks the script end to end
#
# PYTHON picks the interpreter (default: the repository's .venv, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ " $* " != *" --dry-run "* ]] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >&2 || true
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
