#!/usr/bin/env bash
# Optional test set-up: the independent estimators that tests/repr/test_repr_gride.py checks
# TwoNN and GRIDE against, in .venv/crosscheck (outside the venv's site-packages; the test
# puts it at the end of sys.path):
#   site/          scikit-dimension 0.5.0 and its dependencies (requirements-crosscheck.txt)
#   dadapy-0.3.4/  DADApy's GRIDE and TwoNN code from its source distribution
#                  (requirements-dadapy.txt, hash-checked; DADApy itself does not install
#                  beside this torch)
# Re-running is cheap: a stamp records what was installed. Without it the tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.venv/crosscheck
stamp=$dir/.stamp
want=$(cat requirements.txt requirements-crosscheck.txt requirements-dadapy.txt scripts/setup-crosscheck.sh \
  | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "== installing the cross-check estimators into $dir" >&2
rm -rf "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -m pip install -q --no-deps --target "$tmp/site" -r requirements-crosscheck.txt
mkdir -p "$dir"
mv "$tmp/site" "$dir/"
# --no-build-isolation: pip reads the sdist's metadata with the venv's setuptools instead of
# first installing a build environment (minutes); nothing is built. DADApy's part may fail
# alone (its test then skips with the reason); it is not retried until the pins change.
if .venv/bin/python -m pip download -q --no-deps --no-build-isolation -d "$tmp" \
  -r requirements-dadapy.txt \
  && tar -xzf "$tmp/dadapy-0.3.4.tar.gz" -C "$tmp" dadapy-0.3.4/LICENSE \
    dadapy-0.3.4/dadapy/_utils/utils.py dadapy-0.3.4/dadapy/id_estimation.py; then
  mv "$tmp/dadapy-0.3.4" "$dir/"
else
  echo "DADApy's source distribution could not be fetched; its cross-check will be skipped" >&2
fi
echo "$want" > "$stamp"
