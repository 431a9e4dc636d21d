# bitat-edge: the user-facing commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The venv is rebuilt only when the dependency declaration changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
FLOAT_RUN ?= runs/fmnist_float
RUN ?= runs/fmnist_bitat
DEVICE ?= host
PYTEST_ARGS ?=

.PHONY: help setup data train train-float convert bench emulation bench-arm-emulated test lint clean-venv \
	docker-base docker-ci docker-aarch64 docker-armv7 docker-cortex-m \
	docker-lce-aarch64 docker-lce-armv7 docker-lce-android_arm64

help:  ## list the targets
	@grep -E '^[a-zA-Z_0-9 -]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(STAMP)  ## create .venv with every stage's dependencies (fast when already done)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all]'
	$(BIN)/python -m pip check
	@rm -f $(VENV)/.installed-* && touch $@

data:  ## make sure Fashion-MNIST is on disk (Debian package, else the download path)
	@bash scripts/ensure_fashion_mnist.sh

train-float: setup data  ## train (or reuse) the float teacher
	$(BIN)/bitat-edge train run --config configs/fmnist_float.yaml --out $(FLOAT_RUN) --reuse

train: train-float  ## float teacher, then BiTAT W1A1 on Fashion-MNIST (CPU)
	$(BIN)/bitat-edge train run --config configs/fmnist_bitat.yaml --out $(RUN) \
		--set model.init_from=$(FLOAT_RUN)/checkpoints/best.pt \
		--set distill.teacher=$(FLOAT_RUN)/checkpoints/best.pt --reuse

convert: setup  ## convert the latest `make train` run into an LCE deploy bundle
	$(BIN)/bitat-edge convert run $(RUN)

bench: setup  ## measure the bundle on DEVICE (host, rpi4, qemu-aarch64, qemu-armv7, ...)
	@case "$(DEVICE)" in qemu-*) $(MAKE) --no-print-directory emulation EMULATION_ARGS=$(if $(filter qemu-aarch64,$(DEVICE)),,--plugin-only) ;; esac
	$(BIN)/python runtime/bench.py --device $(DEVICE) --bundle $(RUN)/deploy

emulation: setup  ## qemu-user and cross compilers (apt), the QEMU instruction counter and the aarch64 LiteRT sysroot (cached)
	bash scripts/ensure_emulation.sh
	$(BIN)/python -m runtime.emulation setup $(EMULATION_ARGS)

bench-arm-emulated: emulation  ## EMULATED ARM benchmark: the 1-bit model vs LiteRT fp32/int8 -> results/arm_emulated.json
	$(BIN)/python benchmarks/arm_emulated.py --bundle $(RUN) --float-run $(FLOAT_RUN)
	$(BIN)/python benchmarks/update_readme.py

test: setup data  ## run the test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup  ## ruff on the code, hadolint on the Dockerfiles
	$(BIN)/ruff check bitat_edge train convert runtime tests device_tests benchmarks
	$(BIN)/hadolint docker/*.Dockerfile

docker-aarch64 docker-armv7 docker-cortex-m: docker-%:  ## cross-compile our engine in a container (Docker or Podman)
	bash docker/build.sh $*

docker-base:  ## offline: build debian:bookworm-slim from your Debian mirror (debootstrap, root)
	bash docker/base_image.sh

docker-ci:  ## CI step: private dockerd, build every engine target in its image, test it under QEMU
	bash docker/ci.sh

docker-lce-aarch64 docker-lce-armv7 docker-lce-android_arm64: docker-%:  ## LCE's lce_benchmark_model (needs internet)
	bash docker/build.sh $*

clean-venv:
	rm -rf $(VENV)
