"""The C engine (runtime/native) against the LCE interpreter, on the host and under qemu-user.

Each model of native_models.py is compiled into a blob and run by ``bitat_bench`` built for every
available target: the host's generic kernels, the reference binary convolution, and (when the cross
compilers and qemu-user are installed) aarch64 and armv7 NEON under emulation. Binary layers must
match LCE bit for bit. Bad input (a damaged blob, a wrong input size, an unknown op) must fail with
one line, never a crash; the fuzz test runs the loader under AddressSanitizer.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
from native_models import BUILDERS

from runtime.native import build
from runtime.native.bench_output import EMULATORS, BenchProgramError, run_here

TARGETS = ("host", "host-reference", "aarch64", "armv7")
IMAGES = 6


def _target_available(target: str) -> str | None:
    """Why ``target`` cannot run here, or None."""
    spec = build.TARGETS[target]
    if shutil.which(spec.compiler) is None:
        return f"{spec.compiler} not installed (Debian: {spec.package})"
    if target in EMULATORS and shutil.which(EMULATORS[target][0]) is None:
        return f"{EMULATORS[target][0]} not installed (Debian: qemu-user)"
    return None


@pytest.fixture(scope="session")
def program():
    """program(name, target) -> the built program, or a skip when the target's tools are missing."""

    def get(name: str, target: str):
        reason = _target_available(target)
        if reason:
            pytest.skip(reason)
        return build.program(name, target)

    return get


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def case(request, tmp_path_factory):
    """A converted model, its blob on disk, inputs and the LCE interpreter's outputs."""
    import larq_compute_engine as lce

    from convert.blob import compile_blob

    model = BUILDERS[request.param]()
    blob = tmp_path_factory.mktemp(request.param) / "model.blob"
    blob.write_bytes(compile_blob(model.flatbuffer).data)
    rng = np.random.default_rng(7)
    shape = (IMAGES, *model.input_shape[1:])
    if model.input_dtype == np.int8:
        x = rng.integers(-128, 128, shape).astype(np.int8)
    else:
        x = rng.standard_normal(shape, dtype=np.float32)
    reference = np.asarray(lce.testing.Interpreter(model.flatbuffer).predict(x, verbose=0))
    return request.param, model, blob, x, reference


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("target", TARGETS)
def test_engine_matches_the_lce_interpreter(case, target, program):
    name, model, blob, x, reference = case
    out = run_here(program("bench", target), blob, x, target=target, timeout=600)
    got = out.logits.reshape(reference.shape)
    assert got.dtype == reference.dtype
    if model.exact:
        mismatched = int(np.sum(got != reference))
        assert mismatched == 0, f"{name} on {target} ({out.kernel}): {mismatched} of {got.size} values differ"
    else:
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(reference).max())))


@pytest.mark.parametrize("target", TARGETS)
def test_optimized_binary_convolution_matches_the_reference(target, program):
    prefix = EMULATORS.get(target, [])
    done = subprocess.run([*prefix, str(program("selftest", target)), "400", "3"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("selftest kernel=") and done.stdout.rstrip().endswith("ok")


@pytest.mark.parametrize("target", ("host", "aarch64"))
def test_float_convolutions_match_the_reference_build_bit_for_bit(target, program, tmp_path):
    """Each target's optimized float conv paths (on aarch64 the weight-stationary stem) against the
    reference build's conv_pixel: same fused multiply-adds in the same order, so the same bits. (Not
    armv7: its lane multiply-add, VMLA by scalar, rounds the product separately.)"""
    if "-mfma" not in build.TARGETS["host-reference"].flags:
        pytest.skip("this host has no FMA: its float sums round differently from the ARM targets'")
    from convert.blob import compile_blob

    model = BUILDERS["gray_stems"]()
    blob = tmp_path / "model.blob"
    blob.write_bytes(compile_blob(model.flatbuffer).data)
    x = np.random.default_rng(3).standard_normal((IMAGES, *model.input_shape[1:]), dtype=np.float32)
    reference = run_here(program("bench", "host-reference"), blob, x, target="host-reference").logits
    got = run_here(program("bench", target), blob, x, target=target, timeout=600).logits
    assert got.tobytes() == reference.tobytes(), f"{int(np.sum(got != reference))} values differ"


def test_bench_describes_every_op_with_its_macs(case, program):
    name, model, blob, _, _ = case
    from convert.blob import BLOB_FORMAT_VERSION

    out = run_here(program("bench", "host"), blob)
    assert out.blob_format == BLOB_FORMAT_VERSION and out.arena > 0 and out.ops
    for op in out.ops:
        if op.name == "LceBconv2d":
            assert op.binary_macs > 0 and op.macs == 0
        else:
            assert op.binary_macs == 0


def _restamp(data: bytearray) -> bytes:
    data[8:12] = struct.pack("<I", len(data))
    data[12:16] = struct.pack("<I", zlib.crc32(bytes(data[16:])))
    return bytes(data)


def test_bad_blobs_and_inputs_fail_with_one_line(case, program, tmp_path):
    _, model, blob, x, _ = case
    bench = program("bench", "host")
    data = blob.read_bytes()
    bad = {
        "truncated": (data[: len(data) // 2], "truncated"),
        "flipped": (data[:40] + bytes([data[40] ^ 0x10]) + data[41:], "checksum mismatch"),
        "future format": (_restamp(bytearray(data[:4] + struct.pack("<I", 99) + data[8:])), "format version 99"),
    }
    ops_offset = struct.unpack_from("<I", data, 32)[0]
    unknown = bytearray(data)
    unknown[ops_offset:ops_offset + 4] = struct.pack("<I", 99)
    bad["unknown op"] = (_restamp(unknown), "kind 99 is not an op this engine runs")
    for what, (content, message) in bad.items():
        path = tmp_path / f"{what}.blob"
        path.write_bytes(content)
        with pytest.raises(BenchProgramError, match=message) as info:
            run_here(bench, path, x[:1])
        assert "\n" not in str(info.value), what
    with pytest.raises(BenchProgramError, match="not a multiple of the .*-byte input"):
        run_here(bench, blob, np.zeros(x[0].size + 1, x.dtype))


@pytest.mark.parametrize("name", ["int8_input", "bitpacked_output"])
def test_loader_fuzz_under_address_sanitizer(name, program, tmp_path):
    """Every truncation and 1500 random byte flips (each also with a valid checksum) of a small blob:
    one-line errors, and what loads runs, with no memory error."""
    from convert.blob import compile_blob

    path = tmp_path / "model.blob"
    path.write_bytes(compile_blob(BUILDERS[name]().flatbuffer).data)
    done = subprocess.run([str(program("fuzz", "host-asan")), str(path), "1500", "5"], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert done.stdout.startswith("fuzz truncations=") and done.stdout.rstrip().endswith("ok")


def test_engine_sources_compile_for_cortex_m4(program):
    """The MCU target: the same sources, warnings-clean, with arm-none-eabi-gcc (compile only)."""
    program("bench", "host")  # the host build first, so a source error reports there
    reason = _target_available("cortex-m4")
    if reason:
        pytest.skip(reason)
    assert build.build("cortex-m4").is_dir()
