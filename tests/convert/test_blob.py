"""The blob compiler (convert/blob.py) and memory planner: format agreement with the C engine's headers,
planning, and clean one-line errors for models outside the engine's op set or damaged flatbuffers.
The engine running the blobs is tested in tests/runtime/test_native_engine.py."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from convert.blob import BLOB_FORMAT_VERSION, KIND_PARAMS, KINDS, MAGIC, PARAMS, BlobError, compile_blob
from convert.memory_plan import ALIGNMENT, Buffer, plan

NATIVE = Path(__file__).resolve().parents[2] / "runtime" / "native"


def _c_enum_name(kind: str) -> str:
    name = "LCE_" + kind[3:].upper() if kind.startswith("Lce") else kind
    return "BE_KIND_" + name.replace("+", "_")


def test_format_version_agrees_with_the_c_header():
    header = (NATIVE / "include" / "bitat_engine.h").read_text()
    version = int(re.search(r"#define BE_BLOB_FORMAT_VERSION (\d+)", header).group(1))
    assert version == BLOB_FORMAT_VERSION
    assert f"{MAGIC:#x}".lower() in (NATIVE / "src" / "blob_format.h").read_text().lower()


def test_op_kinds_and_parameter_structs_agree_with_the_c_header():
    source = (NATIVE / "src" / "blob_format.h").read_text()
    enum = dict((name, int(value)) for name, value in re.findall(r"(BE_KIND_\w+) = (\d+)", source))
    assert enum == {_c_enum_name(kind): number for kind, number in KINDS.items()}
    structs = {name: re.findall(r"(int32_t|float) (\w+);", body)
               for body, name in re.findall(r"typedef struct \{([^}]*)\} be_params_(\w+);", source)}
    assert structs == {layout: [("int32_t" if t == "i" else "float", f) for f, t in fields]
                       for layout, fields in PARAMS.items()}
    assert set(KIND_PARAMS.values()) == set(PARAMS)


def test_memory_plan_never_overlaps_buffers_alive_at_the_same_time():
    rng = np.random.default_rng(0)
    for _ in range(50):
        buffers = []
        for key in range(int(rng.integers(1, 30))):
            first = int(rng.integers(0, 20))
            buffers.append(Buffer(key, int(rng.integers(1, 5000)), first, first + int(rng.integers(0, 6))))
        offsets, total = plan(buffers)
        assert all(offsets[b.key] % ALIGNMENT == 0 and offsets[b.key] + b.size <= total for b in buffers)
        for a in buffers:
            for b in buffers:
                if a.key < b.key and a.first <= b.last and b.first <= a.last:
                    assert offsets[a.key] + a.size <= offsets[b.key] or offsets[b.key] + b.size <= offsets[a.key]
        peak = max(sum(b.size for b in buffers if b.first <= t <= b.last) for t in range(30))
        assert total >= peak


@pytest.fixture(scope="module")
def small_models():
    """Two tiny converted models: one the engine runs, one with an op outside its set (TANH)."""
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import larq as lq
    import tensorflow as tf

    from convert.lce import convert_lce

    inp = tf.keras.Input((6, 6, 8), batch_size=1)
    y = lq.layers.QuantConv2D(16, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                              kernel_quantizer="ste_sign", kernel_constraint=None, use_bias=False)(inp)
    good = convert_lce(tf.keras.Model(inp, tf.keras.layers.GlobalAveragePooling2D()(y)))
    inp = tf.keras.Input((4, 4, 3), batch_size=1)
    bad = convert_lce(tf.keras.Model(inp, tf.keras.layers.Activation("tanh")(tf.keras.layers.Conv2D(4, 3)(inp))))
    return good, bad


@pytest.mark.slow
def test_blob_header_is_consistent_and_compiling_is_deterministic(small_models):
    good, _ = small_models
    compiled = compile_blob(good)
    data = compiled.data
    magic, version, total, crc = struct.unpack_from("<4I", data)
    assert (magic, version, total) == (MAGIC, BLOB_FORMAT_VERSION, len(data))
    assert crc == zlib.crc32(data[16:])
    assert struct.unpack_from("<I", data, 16)[0] == compiled.arena_bytes > 0
    assert compile_blob(good).data == data
    assert [op.kind for op in compiled.ops] == ["LceQuantize", "PAD", "LceBconv2d", "MEAN"]
    assert compiled.ops[2].source_ops == (1,)  # the +1 padding became a PAD of the packed input


@pytest.mark.slow
def test_op_outside_the_engine_set_fails_naming_it(small_models):
    _, bad = small_models
    with pytest.raises(BlobError, match=r"op 1 \(TANH\) is not supported by the engine") as info:
        compile_blob(bad)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_damaged_flatbuffers_fail_with_one_line_errors(small_models):
    good, _ = small_models
    rng = np.random.default_rng(1)
    cases = [good[:n] for n in range(0, len(good), max(1, len(good) // 150))]
    for _ in range(150):
        damaged = bytearray(good)
        for position in rng.integers(0, len(good), size=int(rng.integers(1, 5))):
            damaged[position] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(damaged))
    cases.append(b"not a flatbuffer at all")
    failures = 0
    for case in cases:
        try:
            compile_blob(case)
        except BlobError as exc:
            failures += 1
            assert "\n" not in str(exc)
    assert failures >= len(cases) // 2  # truncations always fail; some flips land in weights and still compile
