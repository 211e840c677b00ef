#!/usr/bin/env bash
# Set up if needed, then run the main job on the default model:
# profile -> report -> plan -> prune -> reload with plain transformers -> evaluate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# --overwrite: rerunning the demo replaces its own previous output in out/demo.
exec .venv/bin/depthlens demo --overwrite "$@"
