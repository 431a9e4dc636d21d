"""The fusion pass of the blob compiler on a ReActNet-shaped LCE model: what it absorbs, and that the engine
computes exactly the same logits from the fused blob as from the unfused one (host build)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "runtime"))

from mcu_models import images, reactnet_like  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def blobs():
    pytest.importorskip("tensorflow")
    from convert.blob import compile_blob

    flatbuffer = reactnet_like()
    return compile_blob(flatbuffer, memory_fusion=True), compile_blob(flatbuffer)


def test_fusion_absorbs_the_chains_binarizers_pads_and_pools(blobs):
    fused, unfused = blobs
    before, after = Counter(op.kind for op in unfused.ops), Counter(op.kind for op in fused.ops)
    # without it, the compiler's own exact fusions (CHAIN, CONV_2D+PRELU) leave these
    assert before["PAD"] == 1 and before["AVERAGE_POOL_2D"] == 1 and before["CONV_2D+PRELU"] == 1
    assert before["CHAIN"] == 2 and before["LceBconv2d"] == 3 and before["CONCATENATION"] == 1
    # the stem conv with its RPReLU, pad+threshold binarizer and pool; each binary conv with the chain after it
    # (the two branches writing their channels of the concatenation); the chain after the concatenation
    assert dict(after) == {"BITAT_FUSED": 5, "MEAN": 1, "FULLY_CONNECTED": 1}
    producers = [op.kind for op in fused.ops]
    assert producers[:5] == ["BITAT_FUSED"] * 5
    assert fused.arena_bytes < 0.5 * unfused.arena_bytes
    assert len(fused.data) < len(unfused.data)  # absorbed constants are dropped


def test_fused_blob_computes_the_same_bits_on_the_host_engine(blobs, tmp_path):
    from runtime.native.build import BuildError, program

    try:
        bench = program("bench", "host")
    except BuildError as exc:
        pytest.skip(str(exc))
    fused, unfused = blobs
    x = images(64)
    (tmp_path / "x.bin").write_bytes(x.tobytes())
    outputs = []
    for name, blob in (("fused", fused), ("unfused", unfused)):
        (tmp_path / f"{name}.blob").write_bytes(blob.data)
        done = subprocess.run([str(bench), str(tmp_path / f"{name}.blob"), "--images", str(tmp_path / "x.bin"),
                               "--logits", str(tmp_path / f"{name}.out"), "--runs", "1", "--windows", "1",
                               "--warmup", "0"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append((tmp_path / f"{name}.out").read_bytes())
    assert len(outputs[0]) == 64 * 4 * 4
    assert outputs[0] == outputs[1]
    assert np.isfinite(np.frombuffer(outputs[0], np.float32)).all()
