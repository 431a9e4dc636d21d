# Cross-compiles our C engine (runtime/native) and its bench program for aarch64 and armv7 Linux and
# for Cortex-M, from Debian bookworm packages only. Buildable offline: `make docker-base` imports a
# debootstrap of your Debian mirror as debian:bookworm-slim, so this file builds unchanged here and, from
# the public image, anywhere with internet. Build with `make docker-aarch64|docker-armv7|docker-cortex-m`
# (docker/build.sh; Docker or Podman); the context is the repository root, narrowed by .dockerignore.
FROM debian:bookworm-slim AS toolchains
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# Pinned by the release (bookworm): point releases replace patch versions, so exact pins would rot.
# --error-on=any: apt-get update exits 0 on an unreachable mirror otherwise. arm-none-eabi-gcc's default
# headers (the engine's Cortex-M compile check) come from newlib; the MCU firmware links picolibc.
# hadolint ignore=DL3008
RUN apt-get update --error-on=any \
    && apt-get install -y --no-install-recommends \
       gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
       gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
       gcc-arm-none-eabi libnewlib-arm-none-eabi picolibc-arm-none-eabi \
       make python3 \
    && rm -rf /var/lib/apt/lists/*

FROM toolchains AS build
# The engine builder's targets (runtime/native/build.py): aarch64 | armv7 | cortex-m4
ARG TARGET=aarch64
WORKDIR /src
COPY runtime/native runtime/native
# A new value recompiles although the sources are unchanged (docker/build.sh --recompile; CI does).
ARG BUILD_ID=
# The builder's folder per target (programs + the stamp that tells it the build is current) is what
# docker/build.sh installs into runtime/native/build/, where the runtime looks for it.
RUN python3 runtime/native/build.py "${TARGET}" \
    && mkdir /out \
    && cp -R "runtime/native/build/${TARGET}" /out/

FROM scratch AS artifacts
COPY --from=build /out /out
