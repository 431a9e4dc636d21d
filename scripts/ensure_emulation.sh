#!/usr/bin/env bash
# Debian packages that measuring on emulated ARM needs (qemu-user, a C compiler for the instruction-counting
# plugin, the aarch64/armhf cross compilers for our engine's static binaries); installs the missing ones.
# The plugin and the aarch64 Python + LiteRT sysroot are then built by `python -m runtime.emulation setup`.
set -euo pipefail
packages=(qemu-user gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross
          gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing Debian packages: ${missing[*]} (this machine has no apt-get; install them another way)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo -n"
echo "Installing Debian packages for emulated ARM: ${missing[*]}"
if ! $sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
