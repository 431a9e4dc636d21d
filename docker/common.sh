# shellcheck shell=bash
# Sourced by docker/*.sh: pick a container engine (Docker, Podman or Buildah, whichever is usable) and
# build, import and export images with it. Callers set SCRIPT (their name, for messages) first.

# The base every Dockerfile here starts from, as Docker and as Podman/Buildah spell it.
BASE_IMAGE=debian:bookworm-slim
BASE_IMAGE_FULL=docker.io/library/$BASE_IMAGE

fail() {  # fail EXIT_CODE MESSAGE: one line on stderr, then exit
  echo "$SCRIPT: $2" >&2
  exit "$1"
}

as_root() {  # run a command as root (sudo -n when not root; never prompts)
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

pick_engine() {  # sets ENGINE: $CONTAINER_ENGINE if given, else docker (daemon reachable), podman, buildah
  local wanted="${CONTAINER_ENGINE:-}"
  if [ -n "$wanted" ]; then
    case "$wanted" in docker|podman|buildah) ;; *) fail 2 "CONTAINER_ENGINE must be docker, podman or buildah, not '$wanted'" ;; esac
    command -v "$wanted" >/dev/null 2>&1 || fail 3 "CONTAINER_ENGINE=$wanted but there is no '$wanted' command"
    if [ "$wanted" = docker ] && ! docker info >/dev/null 2>&1; then
      fail 3 "the Docker engine is not reachable ('docker info' failed); start it or check permissions"
    fi
    ENGINE=$wanted
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null 2>&1; then ENGINE=podman
  elif command -v buildah >/dev/null 2>&1; then ENGINE=buildah
  elif command -v docker >/dev/null 2>&1; then
    fail 3 "the Docker engine is not reachable ('docker info' failed); start it, check permissions, or install Podman"
  else
    fail 3 "no 'docker', 'podman' or 'buildah' command; install Docker or Podman and retry"
  fi
}

image_exists() {  # image_exists REF
  case "$ENGINE" in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    podman) podman image exists "$1" ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
  esac
}

base_ref() {  # how this engine names the base image
  if [ "$ENGINE" = docker ]; then echo "$BASE_IMAGE"; else echo "$BASE_IMAGE_FULL"; fi
}

import_rootfs() {  # import_rootfs TARBALL: make a root filesystem tarball the base image
  local ref ctr
  ref="$(base_ref)"
  case "$ENGINE" in
    docker) docker import --change 'CMD ["bash"]' "$1" "$ref" >/dev/null ;;
    podman) podman import --change 'CMD=["bash"]' "$1" "$ref" >/dev/null ;;
    buildah)
      ctr="$(buildah from scratch)"
      buildah add "$ctr" "$1" / >/dev/null
      buildah config --cmd bash "$ctr"
      buildah commit --rm "$ctr" "$ref" >/dev/null ;;
  esac
}

build_stage() {  # build_stage DOCKERFILE CONTEXT STAGE TAG [BUILD_ARG...]: build and tag one stage
  local dockerfile="$1" context="$2" stage="$3" tag="$4"
  shift 4
  local args=(--network=host -f "$dockerfile" --target "$stage" -t "$tag")
  local arg
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  # Podman/Buildah: Docker's image format keeps SHELL (OCI's drops it); --layers caches every step as
  # Docker does (buildah's default does not); chroot isolation also builds where the OCI runtime cannot
  # set up cgroups (BUILDAH_ISOLATION overrides it).
  local buildah_args=(--format docker --layers --isolation "${BUILDAH_ISOLATION:-chroot}")
  case "$ENGINE" in
    docker) docker build "${args[@]}" "$context" ;;
    podman) podman build "${buildah_args[@]}" "${args[@]}" "$context" ;;
    buildah) buildah bud "${buildah_args[@]}" "${args[@]}" "$context" ;;
  esac
}

export_out() {  # export_out TAG DIR: copy the image's /out folder into DIR (which must not exist)
  local tag="$1" dir="$2" ctr status=0
  case "$ENGINE" in
    docker|podman)
      ctr="$("$ENGINE" create "$tag" /none)"
      "$ENGINE" cp "$ctr:/out" "$dir" || status=$?
      "$ENGINE" rm "$ctr" >/dev/null ;;
    buildah)
      ctr="$(buildah from --pull-never "$tag")"
      # buildah mount needs root or, rootless, the user namespace `buildah unshare` enters.
      local userns=()
      [ "$(id -u)" = 0 ] || userns=(buildah unshare)
      # shellcheck disable=SC2016 # expanded by the inner sh
      "${userns[@]}" sh -c 'cp -R "$(buildah mount "$1")/out" "$2" && buildah umount "$1" >/dev/null' \
        sh "$ctr" "$dir" || status=$?
      buildah rm "$ctr" >/dev/null ;;
  esac
  return "$status"
}

install_files() {  # install_files FROM_DIR TO_DIR: move every file across, each replaced atomically
  local from="$1" to="$2" rel
  while IFS= read -r -d '' rel; do
    rel="${rel#./}"
    mkdir -p "$to/$(dirname "$rel")"
    cp -p "$from/$rel" "$to/$rel.tmp.$$"
    mv -f "$to/$rel.tmp.$$" "$to/$rel"
    echo "$SCRIPT: wrote $to/$rel"
  done < <(cd "$from" && find . -type f -print0 | sort -z)
}
