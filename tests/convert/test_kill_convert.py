"""kill -9 at random points of ``bitat-edge convert run`` (what ``make convert`` runs): the run's deploy
directory is always a complete bundle (the previous one or the new one), never partial or missing. The
write step itself is killed 40 times in tests/test_outdir.py; here the whole command is, in a subprocess.
The first, unkilled run also shows what the command prints: no TensorFlow noise."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from onnx_nets import OnnxNet

from bitat_edge.layout import BundleDir, RunDir
from bitat_edge.manifest import InputSpec, Manifest
from runtime.bundle import load_bundle

REPO = Path(__file__).resolve().parents[2]
KILLS = 3


def _exported_run(root: Path) -> RunDir:
    """A run directory holding what ``train export`` writes, for a small binary net."""
    run = RunDir(root)
    root.mkdir(parents=True)
    net = OnnxNet((1, 4, 8, 8), seed=11)
    x = net.conv(net.input, net.rng.normal(0, 0.4, (16, 4, 3, 3)).astype(np.float32), pads=1)
    x = net.bn(net.conv(net.pad(net.binarize(net.bn(x, 16)), (1, 1, 1, 1), 1.0), net.binary_weight(16, 16, 3)), 16)
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])])
    logits = net.op("Gemm", [x, net.const(net.rng.normal(0, 1, (5, 16))), net.const(np.zeros(5))], transB=1)
    net.save(run.onnx, logits, output_shape=[1, 5])
    Manifest(model_name="kill", input=InputSpec(shape=[1, 4, 8, 8]), classes=[f"c{i}" for i in range(5)]
             ).save(run.manifest)
    rng = np.random.default_rng(0)
    np.savez(run.eval, x=rng.normal(size=(200, 4, 8, 8)).astype(np.float32), y=rng.integers(0, 5, 200))
    np.savez(run.calib, x=rng.normal(size=(16, 4, 8, 8)).astype(np.float32))
    return run


def _convert(run: RunDir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from bitat_edge.cli import main; main()", "convert", "run",
                             str(run.root)],
                            cwd=run.root.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)


def _digest(bundle: BundleDir) -> str:
    load_bundle(bundle.root)  # complete and valid: manifest, all three flatbuffers, eval set
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(bundle.members()) if p.exists())).hexdigest()


@pytest.mark.slow
def test_kill_minus_9_during_convert_run_never_leaves_a_broken_bundle(tmp_path):
    run = _exported_run(tmp_path / "run")
    start = time.monotonic()
    proc = _convert(run)
    out, err = proc.communicate(timeout=900)
    took = time.monotonic() - start
    assert proc.returncode == 0, err
    assert err == "", f"the command printed noise on stderr:\n{err}"  # no TensorFlow/CUDA registration lines
    assert out.startswith(f"wrote {run.deploy.root}:") and "parity gate passed" in out
    seen = {_digest(run.deploy)}
    rng = random.Random(3)
    for _ in range(KILLS):
        proc = _convert(run)
        time.sleep(rng.uniform(0.3, 1.0) * took)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        seen.add(_digest(run.deploy))  # the old bundle or a complete new one
    print(f"convert kill test: {KILLS} kills of `bitat-edge convert run` at random points of a {took:.0f} s run; "
          f"{len(seen)} distinct complete bundles seen, never a partial or missing one")
