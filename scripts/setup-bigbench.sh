#!/usr/bin/env bash
# Optional: BIG-bench's multiple-choice task JSON (for `depthlens eval --mc` and the MC
# columns of bench/prune_quality.py). `pip install bigbench==1.0.0` is refused by current
# pip even with --no-deps (its metadata names a direct-URL dependency), so this downloads
# the sdist with pip (358 MB), keeps pip's unpacked copy, and copies only the task JSON
# files into the depthlens cache ($DEPTHLENS_CACHE or ~/.cache/depthlens)/bigbench.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cache=$(.venv/bin/python -c "from depthlens.paths import default_cache_dir; print(default_cache_dir())")
dest="$cache/bigbench/benchmark_tasks"
if [ -f "$dest/cause_and_effect/task.json" ]; then echo "BIG-bench tasks already in $dest"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TMPDIR="$work"
# The download "fails" on the metadata check after unpacking; --no-clean keeps the files.
.venv/bin/python -m pip download -q --no-clean --no-deps -d "$work/dl" bigbench==1.0.0 >/dev/null 2>&1 || true
src=$(ls -d "$work"/pip-download-*/bigbench_*/bigbench/benchmark_tasks 2>/dev/null | head -n1)
[ -n "$src" ] || { echo "could not download the bigbench sdist" >&2; exit 2; }
mkdir -p "$cache/bigbench"
tmp="$cache/bigbench/.tasks.tmp-$$"
rm -rf "$tmp"
(cd "$src" && find . -name '*.json' -print0 | tar --null -cf - -T -) | (mkdir -p "$tmp" && cd "$tmp" && tar -xf -)
rm -rf "$dest" && mv "$tmp" "$dest"
echo "BIG-bench task JSON in $dest ($(du -sh "$dest" | cut -f1))"
