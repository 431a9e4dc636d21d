#!/usr/bin/env bash
# A private Docker daemon for machines without one (CI): Debian's dockerd with its own data-root (kept,
# it is the image and layer cache), exec-root, pidfile and socket under one run folder, no iptables and
# no bridge (builds use --network=host). Stopped by its PID; then every mount, process and folder it
# made is gone, except the data-root.
#   bash docker/dockerd.sh start RUN_DIR [DATA_ROOT]   prints DOCKER_HOST=unix://RUN_DIR/docker.sock
#   bash docker/dockerd.sh stop RUN_DIR [DATA_ROOT]     stops it, cleans up, checks nothing is left
# Sourcing this file gives dockerd_start / dockerd_stop (docker/ci.sh does).
# RUN_DIR must be short (unix socket paths are limited to 108 bytes) and must not exist yet.

DOCKERD_DATA_ROOT_DEFAULT="${XDG_CACHE_HOME:-$HOME/.cache}/bitat-edge/dockerd"
# Folders dockerd and its containerd create outside their roots (compiled-in paths).
DOCKERD_FIXED_DIRS=(/run/docker/plugins /run/docker /run/containerd/s /run/containerd)

dockerd_start() {  # dockerd_start RUN_DIR DATA_ROOT: start, wait until it answers, print DOCKER_HOST=...
  local run="$1" data="$2" pid i dir
  command -v dockerd >/dev/null 2>&1 || { echo "dockerd.sh: no dockerd (apt-get install docker.io)" >&2; return 3; }
  if ! mkdir -p "$data" 2>/dev/null; then
    echo "dockerd.sh: cannot use $data as the data-root" >&2
    return 2
  fi
  mkdir "$run" 2>/dev/null || { echo "dockerd.sh: cannot create $run (it must not exist)" >&2; return 2; }
  mkdir "$run/exec"
  for dir in "${DOCKERD_FIXED_DIRS[@]}"; do
    [ -e "$dir" ] || echo "$dir" >>"$run/created"
  done
  dockerd --data-root "$data" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
    --host "unix://$run/docker.sock" --iptables=false --ip6tables=false --bridge=none \
    >"$run/dockerd.log" 2>&1 &
  pid=$!
  echo "$pid" >"$run/pid"
  for ((i = 0; i < 120; i++)); do
    if DOCKER_HOST="unix://$run/docker.sock" docker info >/dev/null 2>&1; then
      echo "DOCKER_HOST=unix://$run/docker.sock"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "dockerd.sh: dockerd did not come up; last lines of $run/dockerd.log:" >&2
  tail -n 5 "$run/dockerd.log" >&2
  dockerd_stop "$run" "$data" >&2
  return 1
}

_alive() {  # _alive PID: running and not a zombie
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

dockerd_leftovers() {  # dockerd_leftovers RUN_DIR DATA_ROOT: print every process and mount still using them
  local run="$1" data="$2" proc cmd
  for proc in /proc/[0-9]*; do  # dockerd, containerd and shims all name a path in the exec-root
    cmd="$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline")" || continue
    case "$cmd" in *"$run/exec"*) echo "process ${proc#/proc/}: $cmd" ;; esac
  done
  awk -v run="$run" -v data="$data" 'index($2, run) == 1 || index($2, data) == 1 {print "mount " $2 " (" $3 ")"}' /proc/self/mounts
}

dockerd_stop() {  # dockerd_stop RUN_DIR DATA_ROOT: stop by PID, unmount, remove RUN_DIR, fail if anything is left
  local run="$1" data="$2" pid i mnt dir left
  [ -d "$run" ] || { echo "dockerd.sh: no run folder $run" >&2; return 2; }
  pid="$(cat "$run/pid" 2>/dev/null)"
  if [ -n "$pid" ] && _alive "$pid"; then
    kill -TERM "$pid"
    for ((i = 0; i < 60; i++)); do _alive "$pid" || break; sleep 0.5; done
    if _alive "$pid"; then
      echo "dockerd.sh: dockerd $pid ignored SIGTERM for 30 s; killing it" >&2
      kill -KILL "$pid"
      sleep 1
    fi
    wait "$pid" 2>/dev/null || true  # reap it when it is this shell's child
  fi
  # dockerd leaves its network namespace (nsfs) mounted under the exec-root; unmount deepest first.
  awk -v run="$run" 'index($2, run) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r mnt; do
    umount "$mnt" || umount -l "$mnt"
  done
  if [ -f "$run/created" ]; then
    while read -r dir; do rmdir "$dir" 2>/dev/null || true; done <"$run/created"
  fi
  left="$(dockerd_leftovers "$run" "$data")"
  rm -rf "$run"
  if [ -n "$left" ]; then
    echo "dockerd.sh: left behind after stopping dockerd $pid:" >&2
    echo "$left" >&2
    return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}:${2:-}" in
    start:?*) dockerd_start "$2" "${3:-$DOCKERD_DATA_ROOT_DEFAULT}" ;;
    stop:?*) dockerd_stop "$2" "${3:-$DOCKERD_DATA_ROOT_DEFAULT}" ;;
    *) echo "usage: bash docker/dockerd.sh start|stop RUN_DIR [DATA_ROOT]" >&2; exit 2 ;;
  esac
fi
