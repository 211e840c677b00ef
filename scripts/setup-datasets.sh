#!/usr/bin/env bash
# Optional: the labelled image data of `depthlens repr`.
#  - Fashion-MNIST from Debian (`dataset-fashion-mnist`, 31 MB, idx .gz) when run as root;
#  - a few real photos (cat, coffee, motorcycle) from Debian's python3-skimage package,
#    unpacked without installing it into $DEPTHLENS_CACHE/images/skimage, for the
#    MobileNetV2 ImageNet top-5 sanity test.
# CIFAR-10 comes with the BIG-bench step: scripts/setup-bigbench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST: run as root: apt-get install dataset-fashion-mnist" >&2
  fi
fi
cache=$(.venv/bin/python -c "from depthlens.paths import default_cache_dir; print(default_cache_dir())")
dest="$cache/images/skimage"
if [ ! -f "$dest/chelsea.png" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -q python3-skimage >/dev/null 2>&1) || {
    echo "sample photos: apt-get download python3-skimage failed; skipping" >&2; exit 0; }
  dpkg -x "$work"/python3-skimage_*.deb "$work/x"
  mkdir -p "$dest"
  for f in chelsea.png coffee.png motorcycle_left.png astronaut.png rocket.jpg; do
    cp "$work/x/usr/lib/python3/dist-packages/skimage/data/$f" "$dest/"
  done
fi
echo "labelled data ready: Fashion-MNIST $(test -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz && echo yes || echo no), photos in $dest"
