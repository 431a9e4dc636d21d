#!/usr/bin/env bash
# Build lce_benchmark_model for TARGET in Docker and place it where bench.py looks for it:
#   bash docker/build.sh aarch64|armv7|android_arm64   (make docker-<target>)
# Output: runtime/bin/lce_benchmark_model_<aarch64|aarch32|android_arm64> (LCE's release names).
set -euo pipefail

usage() { echo "usage: bash docker/build.sh aarch64|armv7|android_arm64" >&2; exit 2; }
[ "$#" -eq 1 ] || usage
target="$1"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$target" in
  aarch64)       dockerfile=linux.Dockerfile;         args=(--build-arg BAZEL_CONFIG=aarch64); suffix=aarch64 ;;
  armv7)         dockerfile=linux.Dockerfile;         args=(--build-arg BAZEL_CONFIG=rpi3);    suffix=aarch32 ;;
  android_arm64) dockerfile=android_arm64.Dockerfile; args=();                                 suffix=android_arm64 ;;
  *) echo "docker/build.sh: unknown target '$target'" >&2; usage ;;
esac

if ! command -v docker >/dev/null 2>&1; then
  echo "docker/build.sh: no 'docker' command; install Docker (or build natively with CMake, see docs) and retry" >&2
  exit 3
fi
if ! docker info >/dev/null 2>&1; then
  echo "docker/build.sh: the Docker engine is not reachable ('docker info' failed); start it or check permissions" >&2
  exit 3
fi

image="bitat-edge/lce-benchmark-model:${target}"
docker build -f "$repo/docker/$dockerfile" "${args[@]}" -t "$image" "$repo/docker"
container="$(docker create "$image")"
trap 'docker rm -f "$container" >/dev/null 2>&1 || true' EXIT
mkdir -p "$repo/runtime/bin"
out="$repo/runtime/bin/lce_benchmark_model_${suffix}"
docker cp "$container:/out/lce_benchmark_model" "$out.tmp"
chmod 755 "$out.tmp"
mv -f "$out.tmp" "$out"
echo "docker/build.sh: wrote $out"
