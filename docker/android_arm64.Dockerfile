# Cross-compiles LCE's lce_benchmark_model for Android arm64-v8a (PIE), following LCE v0.16.0's
# release workflow: NDK 25.2.9519653, API 30, build-tools 31.0.0 via third_party/install_android.sh,
# Java 8, then configure.py with LCE_SET_ANDROID_WORKSPACE=1.
# NOT BUILDABLE OFFLINE: it pulls ubuntu:22.04 and fetches Bazel, the Android NDK/SDK, LCE and
# TensorFlow from the internet, so our CI never builds it. With internet: `make docker-lce-android_arm64`.
# Base pinned by tag; no digest is recorded (none could be verified offline): pass
# --build-arg BASE_IMAGE=ubuntu:22.04@sha256:<digest> to pin one.
ARG BASE_IMAGE=ubuntu:22.04
FROM ${BASE_IMAGE} AS build

ARG LCE_TAG=v0.16.0
ARG BAZELISK_VERSION=v1.19.0
ENV DEBIAN_FRONTEND=noninteractive \
    USE_BAZEL_VERSION=6.5.0 \
    TF_PYTHON_VERSION=3.10 \
    JAVA_HOME=/usr/lib/jvm/java-8-openjdk-amd64 \
    LCE_SET_ANDROID_WORKSPACE=1 \
    ANDROID_SDK_HOME=/tmp/lce_android \
    ANDROID_API_LEVEL=30 \
    ANDROID_NDK_HOME=/tmp/lce_android/ndk/25.2.9519653 \
    ANDROID_NDK_API_LEVEL=30 \
    ANDROID_BUILD_TOOLS_VERSION=31.0.0

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu's archive rotates patch versions, so packages are pinned by the release (the base tag).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       build-essential ca-certificates curl git openjdk-8-jdk-headless python3 python3-dev python3-numpy \
       python3-six unzip zip \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /usr/bin/python3 /usr/local/bin/python

RUN curl -fsSL -o /usr/local/bin/bazelisk \
       "https://github.com/bazelbuild/bazelisk/releases/download/${BAZELISK_VERSION}/bazelisk-linux-amd64" \
    && chmod +x /usr/local/bin/bazelisk

RUN git clone --depth 1 --branch "${LCE_TAG}" https://github.com/larq/compute-engine.git /lce
WORKDIR /lce

RUN ./third_party/install_android.sh \
    && python3 configure.py \
    && bazelisk build //larq_compute_engine/tflite/benchmark:lce_benchmark_model \
       --config=android_arm64 -c opt --copt=-O3 \
    && mkdir -p /out \
    && cp bazel-bin/larq_compute_engine/tflite/benchmark/lce_benchmark_model /out/lce_benchmark_model \
    && bazelisk shutdown

FROM scratch AS artifacts
COPY --from=build /out /out
