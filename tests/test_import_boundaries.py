"""Stages talk through files: convert/ and runtime/ never load train/ or torch; the core loads no framework.

Each check imports every module of a package in a fresh interpreter, one after another, and looks at
``sys.modules`` after each import, so the first module that pulls in a forbidden package is named.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = r"""
import importlib, json, sys
modules, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in modules:
    importlib.import_module(name)
    loaded = sorted(f for f in forbidden if f in sys.modules)
    if loaded:
        print(json.dumps({"module": name, "loaded": loaded}))
        sys.exit(3)
print(json.dumps({"module": None, "loaded": []}))
"""


def _modules(package: str) -> list[str]:
    root = REPO / package
    names = [package]
    for info in pkgutil.walk_packages([str(root)], prefix=f"{package}."):
        names.append(info.name)
    return sorted(names)


def _probe(modules: list[str], forbidden: list[str]) -> dict:
    env_prefix = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules), json.dumps(forbidden)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, **env_prefix}, timeout=600,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"import probe crashed (exit {result.returncode}):\n{result.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("convert", ["train", "torch"]),
        ("runtime", ["train", "torch", "convert"]),
        ("bitat_edge", ["torch", "tensorflow", "train", "convert", "runtime"]),
    ],
)
def test_package_never_imports_forbidden(package, forbidden):
    modules = _modules(package)
    outcome = _probe(modules, forbidden)
    assert outcome["module"] is None, f"importing {outcome['module']} loaded {outcome['loaded']}"


def test_converting_imports_tensorflow_only_once_the_inputs_are_checked():
    """What loads and checks the inputs, writes bundles and reports, the op registry (`convert ops`) and the CLI
    itself load no TensorFlow, so a user mistake fails fast and quietly (building and running flatbuffers does)."""
    light = ["convert.cli", "convert.pipeline", "convert.onnx_graph", "convert.bundle", "convert.gate",
             "convert.engines", "convert.report", "convert.ops", "convert.lowering", "bitat_edge.cli"]
    outcome = _probe(light, ["tensorflow", "larq", "larq_compute_engine", "onnxruntime"])
    assert outcome["module"] is None, f"importing {outcome['module']} loaded {outcome['loaded']}"


def test_probe_detects_a_violation():
    """The probe itself must be able to fail: train.methods does load torch."""
    outcome = _probe(["bitat_edge", "train.methods"], ["torch"])
    assert outcome == {"module": "train.methods", "loaded": ["torch"]}
