#!/usr/bin/env bash
# Offline machines: build the base image every Dockerfile here starts from (debian:bookworm-slim) with
# debootstrap from the Debian mirror apt already uses, and import it under the public image's name, so
# the unchanged Dockerfiles build here and, from the public image, on any machine with internet.
#   bash docker/base_image.sh [--force]      (make docker-base; needs root or sudo -n, and debootstrap)
#   bash docker/base_image.sh --print-sources   (only show the apt sources the image would get)
# The mirror is the one /etc/apt/sources.list* names for bookworm; DEBIAN_MIRROR=URL overrides it.
set -euo pipefail
SCRIPT=docker/base_image.sh
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/common.sh
. "$here/common.sh"

SUITE=bookworm
APT_ETC="${APT_ETC:-/etc/apt}"  # where the apt sources are read from
SUITES=("$SUITE" "$SUITE-updates" "$SUITE-security")

apt_suite_uris() {  # print "SUITE URI" for every enabled deb source (one-line and deb822 formats)
  local files=()
  [ -f "$APT_ETC/sources.list" ] && files+=("$APT_ETC/sources.list")
  for f in "$APT_ETC"/sources.list.d/*.list "$APT_ETC"/sources.list.d/*.sources; do [ -f "$f" ] && files+=("$f"); done
  [ "${#files[@]}" -gt 0 ] || return 0
  awk '
    function flush(   n, k, s, u) {
      if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
        n = split(suites, s, " "); split(uris, u, " ")
        for (k = 1; k <= n; k++) print s[k], u[1]
      }
      types = uris = suites = enabled = ""
    }
    FNR == 1 { flush() }
    FILENAME ~ /\.list$/ {
      if ($1 != "deb") next
      i = 2
      if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
      print $(i + 1), $i
      next
    }
    /^#/ { next }
    /^[ \t]*$/ { flush(); next }
    { key = $1; sub(/^[^:]*:[ \t]*/, "") }
    key == "Types:" { types = $0 } key == "URIs:" { uris = $0 }
    key == "Suites:" { suites = $0 } key == "Enabled:" { enabled = $0 }
    END { flush() }
  ' "${files[@]}"
}

debian_sources() {  # the base image's /etc/apt/sources.list.d/debian.sources: one stanza per suite
  local main="$1" pairs suite uri
  pairs="$(apt_suite_uris)"
  for suite in "${SUITES[@]}"; do
    uri="$(awk -v s="$suite" '$1 == s {print $2; exit}' <<<"$pairs")"
    if [ "$suite" = "$SUITE" ]; then uri="$main"; fi
    [ -n "$uri" ] || continue
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n\n' \
      "$uri" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg
  done
}

[ "$#" -le 1 ] || fail 2 "usage: bash docker/base_image.sh [--force|--print-sources]"
mirror="${DEBIAN_MIRROR:-$(apt_suite_uris | awk -v s="$SUITE" '$1 == s {print $2; exit}')}"
[ -n "$mirror" ] || fail 3 "no '$SUITE' source in $APT_ETC/sources.list*; set DEBIAN_MIRROR=<Debian mirror URL>"
force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  --print-sources) debian_sources "$mirror"; exit 0 ;;
  *) fail 2 "usage: bash docker/base_image.sh [--force|--print-sources]" ;;
esac
pick_engine
if [ "$force" = 0 ] && image_exists "$(base_ref)"; then
  echo "$SCRIPT: $(base_ref) is already in $ENGINE's image store (--force rebuilds it)"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || fail 3 "no debootstrap (apt-get install debootstrap), or pull $BASE_IMAGE from a registry"

work="$(mktemp -d "${TMPDIR:-/tmp}/bitat-base.XXXXXX")"
trap 'as_root rm -rf "$work"' EXIT
rootfs="$work/rootfs"
echo "$SCRIPT: debootstrap --variant=minbase $SUITE from $mirror"
if ! as_root debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 5 "$work/debootstrap.log" >&2
  fail 1 "debootstrap failed (log above)"
fi
# Make it look like the public slim image: apt sources in deb822 form, no package caches or lists,
# dpkg skipping documentation; keep the host's trust in a snapshot mirror's dates, if it has any.
as_root rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* "$rootfs/etc/apt/sources.list"
debian_sources "$mirror" | as_root tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null
dates="$(apt-config dump | grep -E '^Acquire::Check-(Valid-Until|Date) "false";$' || true)"
[ -z "$dates" ] || as_root tee "$rootfs/etc/apt/apt.conf.d/90mirror-dates" <<<"$dates" >/dev/null
printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
  'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
  | as_root tee "$rootfs/etc/dpkg/dpkg.cfg.d/slim" >/dev/null
as_root tar --numeric-owner -C "$rootfs" -cf "$work/rootfs.tar" .
import_rootfs "$work/rootfs.tar"
echo "$SCRIPT: imported $(base_ref) into $ENGINE ($(du -m "$work/rootfs.tar" | cut -f1) MB)"
