#!/usr/bin/env bash
# Make Fashion-MNIST available: Debian's dataset-fashion-mnist package where apt can install it,
# else leave it to the loader's download path (FASHION_MNIST_DIR or --data-dir point elsewhere).
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -n "${FASHION_MNIST_DIR:-}" ] || [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  echo "Installing Debian package dataset-fashion-mnist (Fashion-MNIST IDX files into $dir)"
  if $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
     { $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; then
    exit 0
  fi
fi
echo "Fashion-MNIST is not in $dir and could not be installed with apt." >&2
echo "Set FASHION_MNIST_DIR to a folder with the four IDX files, or train with --set data.download=true." >&2
exit 1
