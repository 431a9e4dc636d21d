#!/usr/bin/env bash
# CI step: build our engine's cross-compile image offline and use it, on a machine without a Docker daemon.
#   bash docker/ci.sh [TARGET...]      (make docker-ci; TARGETs: aarch64 armv7 cortex-m, default all)
# Starts a private dockerd (docker/dockerd.sh) whose data-root, ~/.cache/bitat-edge/dockerd (or
# $BITAT_DOCKER_CACHE), keeps the base image and the layers between runs; builds the base image from the
# Debian mirror when it is missing; then for each target builds the image with the toolchains, compiles the
# engine inside it, and runs the engine's own tests (tests/runtime/test_native_engine.py) on those programs
# (aarch64, armv7 under qemu-user; Cortex-M: compile check), printing one line per target with the time of
# each step. Finally stops the daemon by its PID and fails if any process or mount it started is left.
# Needs root, docker.io, debootstrap, qemu-user, the project venv (.venv), and on the host the same Debian
# bookworm cross compilers as the image (gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf
# libc6-dev-armhf-cross gcc-arm-none-eabi): the tests run the image's build only when the builder's stamp,
# which includes the compiler version, matches; otherwise they would rebuild it, and this step fails.
set -euo pipefail
SCRIPT=docker/ci.sh
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=docker/dockerd.sh
. "$repo/docker/dockerd.sh"

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(aarch64 armv7 cortex-m)
for target in "${targets[@]}"; do
  case "$target" in
    aarch64|armv7|cortex-m) ;;
    *) echo "usage: bash docker/ci.sh [aarch64|armv7|cortex-m ...] (unknown target '$target')" >&2; exit 2 ;;
  esac
done
data="${BITAT_DOCKER_CACHE:-$DOCKERD_DATA_ROOT_DEFAULT}"
work="$(mktemp -d "${TMPDIR:-/tmp}/bitat-docker-ci.XXXXXX")"
run="$work/d"  # short: the daemon's sockets live under it

log() { echo "docker-ci: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f s", b - a}'; }

step() {  # step NAME COMMAND...: run quietly into $work/NAME.log; on failure show its tail and fail
  local name="$1"
  shift
  if ! "$@" >"$work/$name.log" 2>&1; then
    tail -n 25 "$work/$name.log" >&2
    log "FAILED: $name (last lines of its log above)"
    return 1
  fi
}

stopped=0
stop_daemon() {
  [ "$stopped" = 0 ] && [ -d "$run" ] || return 0  # dockerd_start cleans up after a failed start
  stopped=1
  local t0 pid
  t0="$(now)"
  pid="$(cat "$run/pid" 2>/dev/null || echo '?')"
  if dockerd_stop "$run" "$data"; then
    log "dockerd $pid stopped in $(since "$t0"); no process, mount or folder of it left (data-root $data kept as the cache)"
  else
    log "FAILED: dockerd $pid left something behind (listed above)"
    return 1
  fi
}
finish() {
  local rc=$?
  stop_daemon || rc=1
  rm -rf "$work"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "$SCRIPT: needs root (dockerd, debootstrap)" >&2; exit 3; }
for tool in dockerd docker debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$SCRIPT: no $tool (apt-get install docker.io debootstrap)" >&2; exit 3; }
done

t0="$(now)"
host="$(dockerd_start "$run" "$data")" || exit 1
export "${host?}" CONTAINER_ENGINE=docker
log "dockerd $(cat "$run/pid") up in $(since "$t0") (data-root $data)"

t0="$(now)"
step base bash "$repo/docker/base_image.sh"
log "base image: $(tail -n 1 "$work/base.log" | sed 's/^[^:]*: //') ($(since "$t0"))"

engine_tests() {  # engine_tests TARGET: the engine's own tests for TARGET, run on the programs the image built
  # Called under `if !` (step), where set -e is off: every failure returns explicitly.
  local name="${1/#cortex-m/cortex-m4}" python="$repo/.venv/bin/python" dir before summary
  dir="$repo/runtime/native/build/$name"
  [ -x "$python" ] || python=python3
  before="$(stat -c '%n %i %Y' "$dir"/*)" || { echo "the image left nothing in $dir"; return 1; }
  # The builder reuses a build whose stamp matches its sources, flags and compiler version, so the tests run
  # the image's programs when the host has the same Debian bookworm cross compilers (they check for them).
  (cd "$repo" && "$python" -m pytest -q -p no:cacheprovider tests/runtime/test_native_engine.py -k "${name//-/_}") \
    >"$work/$1-pytest.log" 2>&1
  local rc=$?
  cat "$work/$1-pytest.log"
  [ "$rc" = 0 ] || { echo "the engine's tests failed (exit $rc)"; return 1; }
  [ "$(stat -c '%n %i %Y' "$dir"/*)" = "$before" ] \
    || { echo "the tests rebuilt $dir (host compilers differ from the image's): they did not test its programs"; return 1; }
  summary="$(tail -n 1 "$work/$1-pytest.log")"
  case "$summary" in
    *skipped*) echo "tests were skipped ($summary): they must run here"; return 1 ;;
    *passed*) summary="$(sed -E 's/ in [0-9.]+s.*$//; s/, [0-9]+ (deselected|warnings?)//g' <<<"$summary")"
      if [ "$name" = cortex-m4 ]; then
        echo "$summary: compile check (no Cortex-M program runs here)"
      else
        echo "$summary under QEMU, on the image's programs"
      fi ;;
    *) echo "no test ran ($summary)"; return 1 ;;
  esac
}

for target in "${targets[@]}"; do
  t0="$(now)"
  step "$target-image" bash "$repo/docker/build.sh" --image-only "$target"
  image="$(since "$t0")"
  t0="$(now)"
  step "$target-compile" bash "$repo/docker/build.sh" --recompile "$target"
  compiled="$(since "$t0")"
  t0="$(now)"
  step "$target-test" engine_tests "$target"
  log "$target: image built in $image | engine compiled inside it in $compiled | its tests passed in $(since "$t0") ($(tail -n 1 "$work/$target-test.log"))"
done

left="$(docker ps --all --quiet)"
[ -z "$left" ] || { log "FAILED: containers left: $left"; exit 1; }
docker image prune --force >/dev/null  # drop images that newer builds replaced; the cache stays bounded
stop_daemon
