#!/usr/bin/env bash
# Set up if needed, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The independent estimators tests/repr/test_repr_gride.py checks TwoNN and GRIDE against
# (scikit-dimension, DADApy's source; ~1 min and ~410 MB the first time, outside the venv's
# site-packages). Best effort: without them those tests are skipped with the reason.
bash scripts/setup-crosscheck.sh \
  || echo "the cross-check estimators could not be installed; their tests will be skipped" >&2
# Headless Chromium for the report's browser test (Debian package). Best effort: without
# it that test is skipped with a visible reason.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing chromium for the browser test" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed; the browser test will be skipped" >&2
fi
# The labelled image data of the README's `repr mobilenet-v2 --data fashion-mnist` example
# and of the vision end-to-end tests (Debian's dataset-fashion-mnist and sample photos).
# Best effort as root, like chromium: without them those tests are skipped with the reason.
# (either may be missing: a machine can have the Debian dataset but not the photos cache)
cache=$(.venv/bin/python -c "from depthlens.paths import default_cache_dir; print(default_cache_dir())")
if { [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] \
  || [ ! -f "$cache/images/skimage/chelsea.png" ]; } && [ "$(id -u)" = 0 ] \
  && command -v apt-get >/dev/null; then
  echo "== installing the labelled image data for the vision tests" >&2
  (apt-get update -qq && bash scripts/setup-datasets.sh) \
    || echo "the labelled image data could not be installed; the vision tests will be skipped" >&2
fi
export HF_HUB_OFFLINE=1
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q -rs "$@"
