#!/usr/bin/env bash
# Build TARGET in a container image (Docker, or Podman/Buildah: whichever is usable) and place its files
# where bench.py looks for them:
#   bash docker/build.sh [--image-only] [--recompile] [--out DIR] TARGET      (make docker-<TARGET>)
# Our engine, offline-buildable from Debian bookworm packages (docker/engine.Dockerfile):
#   aarch64, armv7, cortex-m
# LCE's lce_benchmark_model, built with Bazel from GitHub: NEEDS INTERNET (docker/linux.Dockerfile,
# docker/android_arm64.Dockerfile); output runtime/bin/lce_benchmark_model_<aarch64|aarch32|android_arm64>:
#   lce-aarch64, lce-armv7, lce-android_arm64
# --image-only builds just the image with the toolchains; --recompile compiles even when the sources did
# not change (the layer cache would reuse the last build); --out DIR places the files in DIR instead.
# CONTAINER_ENGINE=docker|podman|buildah picks the engine when several are installed.
set -euo pipefail
SCRIPT=docker/build.sh
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=docker/common.sh
. "$repo/docker/common.sh"

usage() {
  echo "usage: bash docker/build.sh [--image-only] [--recompile] [--out DIR] aarch64|armv7|cortex-m|lce-aarch64|lce-armv7|lce-android_arm64" >&2
  exit 2
}

image_only=0 recompile=0 out=""
while [ "$#" -gt 1 ]; do
  case "$1" in
    --image-only) image_only=1; shift ;;
    --recompile) recompile=1; shift ;;
    --out) out="$2"; shift 2 ;;
    *) usage ;;
  esac
done
[ "$#" -eq 1 ] || usage
target="$1"

# lce DOCKERFILE NAME [BUILD_ARG]: LCE's image names its binary lce_benchmark_model; bench.py wants NAME.
lce() {
  dockerfile="$1" rename="$2" args=("${@:3}") name=bitat-edge/lce context="$repo/docker" image_stage=build
  dest="$repo/runtime/bin"
}
rename=""
case "$target" in
  aarch64|armv7|cortex-m)  # TARGET: the engine builder's name (runtime/native/build.py)
    dockerfile=engine.Dockerfile name=bitat-edge/engine context="$repo" image_stage=toolchains
    dest="$repo/runtime/native/build"
    args=("TARGET=$target")
    [ "$target" != cortex-m ] || args=(TARGET=cortex-m4) ;;
  lce-aarch64) lce linux.Dockerfile lce_benchmark_model_aarch64 BAZEL_CONFIG=aarch64 ;;
  lce-armv7) lce linux.Dockerfile lce_benchmark_model_aarch32 BAZEL_CONFIG=rpi3 ;;
  lce-android_arm64) lce android_arm64.Dockerfile lce_benchmark_model_android_arm64 ;;
  *) echo "$SCRIPT: unknown target '$target'" >&2; usage ;;
esac
dest="${out:-$dest}"

pick_engine
if ! image_exists "$(base_ref)" && [ "$dockerfile" = engine.Dockerfile ]; then
  echo "$SCRIPT: $BASE_IMAGE is not local; $ENGINE will pull it (offline: make docker-base builds it from your Debian mirror)"
fi
build_stage "$repo/docker/$dockerfile" "$context" "$image_stage" "$name:$image_stage" "${args[@]}"
[ "$image_only" = 0 ] || exit 0
[ "$recompile" = 0 ] || args+=("BUILD_ID=$(date +%s.%N)")
build_stage "$repo/docker/$dockerfile" "$context" artifacts "$name:$target" "${args[@]}"

mkdir -p "$dest"
staging="$(mktemp -d "$dest/.docker-build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
export_out "$name:$target" "$staging/out"
[ -z "$rename" ] || mv "$staging/out/lce_benchmark_model" "$staging/out/$rename"
install_files "$staging/out" "$dest"
