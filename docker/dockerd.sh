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

_fixed_dirs() {  # folders dockerd and its containerd create outside their roots, children first
  echo /run/docker/plugins /run/docker /run/containerd/s /run/containerd
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2 "/docker"}' /proc/self/mounts  # container cgroups' parents
}

dockerd_start() {  # dockerd_start RUN_DIR DATA_ROOT: start, wait until it answers, print DOCKER_HOST=...
  local run="$1" data="$2" pid i dir
  command -v dockerd >/dev/null 2>&1 || { echo "dockerd.sh: no dockerd (apt-get install docker.io)" >&2; return 3; }
  if ! mkdir -p "$data" 2>/dev/null; then
    echo "dockerd.sh: cannot use $data as the data-root" >&2
    return 2
  fi
  mkdir "$run" 2>/dev/null || { echo "dockerd.sh: cannot create $run (it must not exist)" >&2; return 2; }
  mkdir "$run/exec"
  for dir in $(_fixed_dirs); do
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
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"  # the state follows the command name, which may hold spaces
  [ -n "$stat" ] && [ "${stat%% *}" != Z ]
}

_daemon_pids() {  # _daemon_pids RUN_DIR: dockerd, containerd and shims all name a path in the exec-root
  local proc cmd
  for proc in /proc/[0-9]*; do
    cmd="$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline")" || continue
    case "$cmd" in *"$1/exec"*) _alive "${proc#/proc/}" && echo "${proc#/proc/}" ;; esac
  done
}

_container_pids() {  # _container_pids DATA_ROOT: processes in the cgroup of one of this daemon's containers
  local ids file pid
  ids="$(find "$1/containers" -mindepth 1 -maxdepth 1 -printf '/docker/%f\n' 2>/dev/null)"
  [ -n "$ids" ] || return 0
  for file in /proc/[0-9]*/cgroup; do
    grep -qF "$ids" "$file" 2>/dev/null || continue
    pid="${file#/proc/}"
    pid="${pid%/cgroup}"
    _alive "$pid" && echo "$pid"
  done
}

dockerd_leftovers() {  # dockerd_leftovers RUN_DIR DATA_ROOT: print every process and mount still using them
  local run="$1" data="$2" pid
  for pid in $(_daemon_pids "$run") $(_container_pids "$data"); do
    echo "process $pid: $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"
  done
  awk -v run="$run" -v data="$data" 'index($2, run) == 1 || index($2, data) == 1 {print "mount " $2 " (" $3 ")"}' /proc/self/mounts
}

_stop_pid() {  # _stop_pid PID SECONDS: SIGTERM, then SIGKILL if it still runs after SECONDS
  local i
  _alive "$1" || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for ((i = 0; i < $2 * 2; i++)); do _alive "$1" || break; sleep 0.5; done
  if _alive "$1"; then
    echo "dockerd.sh: process $1 ignored SIGTERM for $2 s; killing it" >&2
    kill -KILL "$1"
    sleep 1
  fi
  wait "$1" 2>/dev/null || true  # reap it when it is this shell's child
}

dockerd_stop() {  # dockerd_stop RUN_DIR DATA_ROOT: stop by PID, unmount, remove RUN_DIR, fail if anything is left
  local run="$1" data="$2" pid orphan mnt dir child left
  [ -d "$run" ] || { echo "dockerd.sh: no run folder $run" >&2; return 2; }
  pid="$(cat "$run/pid" 2>/dev/null)"
  [ -z "$pid" ] || _stop_pid "$pid" 90
  # A dockerd that crashed or had to be killed leaves its containers' processes and their shims running:
  # end those by PID too (a container's first process ignores SIGTERM without a handler: SIGKILL).
  for orphan in $(_container_pids "$data"); do
    echo "dockerd.sh: killing container process $orphan that dockerd $pid left running" >&2
    kill -KILL "$orphan" 2>/dev/null || true
  done
  for orphan in $(_daemon_pids "$run"); do
    echo "dockerd.sh: stopping process $orphan that dockerd $pid left running" >&2
    _stop_pid "$orphan" 10
  done
  # dockerd leaves its network namespace (nsfs) mounted under the exec-root, and a killed one its mounts
  # under the data-root; unmount deepest first.
  awk -v run="$run" -v data="$data" 'index($2, run) == 1 || index($2, data) == 1 {print $2}' /proc/self/mounts |
    sort -r | while read -r mnt; do
    umount "$mnt" || umount -l "$mnt"
  done
  if [ -f "$run/created" ]; then  # with what a killed daemon left in them (empty container cgroups)
    while read -r dir; do
      for child in "$dir"/*/; do [ ! -d "$child" ] || rmdir "$child" 2>/dev/null || true; done
      rmdir "$dir" 2>/dev/null || true
    done <"$run/created"
  fi
  left="$(dockerd_leftovers "$run" "$data"
          [ ! -f "$run/created" ] || while read -r dir; do [ ! -e "$dir" ] || echo "folder $dir"; done <"$run/created")"
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
