# Cross-compiles LCE's lce_benchmark_model for ARM Linux (aarch64: Raspberry Pi 4/5 64-bit OS;
# rpi3: armv7 armhf). Mirrors LCE v0.16.0's release workflow (.github/workflows/release.yml).
# NOT BUILDABLE OFFLINE: it pulls ubuntu:22.04 and fetches Bazel, LCE and TensorFlow from GitHub, so
# our CI never builds it (our own engine's image, engine.Dockerfile, is). With internet:
# `make docker-lce-aarch64` / `make docker-lce-armv7` (docker/build.sh).
# Base pinned by tag; no digest is recorded (none could be verified offline): pass
# --build-arg BASE_IMAGE=ubuntu:22.04@sha256:<digest> to pin one.
ARG BASE_IMAGE=ubuntu:22.04
FROM ${BASE_IMAGE} AS build

ARG LCE_TAG=v0.16.0
ARG BAZELISK_VERSION=v1.19.0
# aarch64 | rpi3 (LCE's .bazelrc configs)
ARG BAZEL_CONFIG=aarch64
ENV DEBIAN_FRONTEND=noninteractive \
    USE_BAZEL_VERSION=6.5.0 \
    TF_PYTHON_VERSION=3.10

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu's archive rotates patch versions, so packages are pinned by the release (the base tag).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       build-essential ca-certificates curl git python3 python3-dev python3-numpy python3-six unzip zip \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /usr/bin/python3 /usr/local/bin/python

RUN curl -fsSL -o /usr/local/bin/bazelisk \
       "https://github.com/bazelbuild/bazelisk/releases/download/${BAZELISK_VERSION}/bazelisk-linux-amd64" \
    && chmod +x /usr/local/bin/bazelisk

RUN git clone --depth 1 --branch "${LCE_TAG}" https://github.com/larq/compute-engine.git /lce
WORKDIR /lce

RUN echo "" | python3 configure.py \
    && bazelisk build //larq_compute_engine/tflite/benchmark:lce_benchmark_model \
       --config="${BAZEL_CONFIG}" -c opt --copt=-O3 \
    && mkdir -p /out \
    && cp bazel-bin/larq_compute_engine/tflite/benchmark/lce_benchmark_model /out/lce_benchmark_model \
    && bazelisk shutdown

FROM scratch AS artifacts
COPY --from=build /out /out
