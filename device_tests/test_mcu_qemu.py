"""The engine as firmware on emulated Cortex-M boards (qemu-system-arm), against host references.

Needs gcc-arm-none-eabi, picolibc-arm-none-eabi, qemu-system-arm, and the QEMU counting plugin
(runtime/emulation: its header comes from Debian's qemu source package once); skipped otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitat_edge.layout import BundleDir
from convert.blob import _channel_blocked
from runtime.errors import BenchError
from runtime.mcu import project, qemu, toolchain
from runtime.mcu.boards import get_board
from runtime.mcu.evaluate import evaluate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "runtime"))

pytestmark = pytest.mark.mcu


@pytest.fixture(scope="module", autouse=True)
def _mcu_tools():
    for tool, package in (("arm-none-eabi-gcc", "gcc-arm-none-eabi picolibc-arm-none-eabi"),
                          ("qemu-system-arm", "qemu-system-arm")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install {package})")


def _counting():
    try:
        from runtime.emulation.plugin import ensure_plugin

        return ensure_plugin()
    except (ImportError, BenchError) as exc:
        pytest.skip(f"the QEMU instruction-count plugin is not available: {exc}")


@pytest.mark.parametrize(("board", "heap"), [("mps2-an386", 1 << 20), ("mps3-an547", 384 << 10)])
def test_engine_selftest_bit_exact_on_board(board, heap, tmp_path):
    """The engine's own self test as firmware: the board's optimized binary GEMM (DSP assembly on the M4, MVE
    on the M55) against the reference convolution, bit for bit, on random shapes."""
    firmware = toolchain.build(get_board(board), {"engine": project.engine_files(),
                                                  "app": [project.FIRMWARE_DIR / "selftest_main.c"]},
                               tmp_path, include_dirs=(*project.ENGINE_INCLUDES, project.NATIVE / "tools"),
                               heap_bytes=heap, stack_bytes=16384, semihosted_libc=True)
    run = qemu.run(firmware, tmp_path, args="60 11", timeout=600)
    assert run.returncode == 0, run.console
    kernel = "cortex-m-mve" if board == "mps3-an547" else "cortex-m-dsp"
    assert f"selftest kernel={kernel} cases=60 ok" in run.console


def _bconv_reference(x, weights, mult, bias, p):
    """LCE's binary convolution in numpy: +1 (bit 0) outside the input, y = float(2 acc) * m + b in float32;
    ``weights`` [Cout][D]."""
    (in_h, in_w, cin, cout, fh, fw, sh, sw, dh, dw, pt, pl, oh, ow, _) = p
    words = (cin + 31) // 32
    out = np.zeros((oh, ow, cout), np.float32)
    for oy in range(oh):
        for ox in range(ow):
            patch = []
            for fy in range(fh):
                for fx in range(fw):
                    iy, ix = oy * sh - pt + fy * dh, ox * sw - pl + fx * dw
                    inside = 0 <= iy < in_h and 0 <= ix < in_w
                    patch.append(x[iy, ix] if inside else np.zeros(words, np.uint32))
            xor = np.concatenate(patch)[None, :] ^ weights
            acc = np.unpackbits(xor.view(np.uint8), axis=1).sum(axis=1)
            out[oy, ox] = np.float32(2 * acc).astype(np.float32) * mult + bias
    return out


@pytest.mark.parametrize("board", ["netduinoplus2", "mps3-an547"])
def test_binary_convolution_bit_exact_against_host_reference(board, tmp_path):
    """Random binary convolutions through the board's kernel equal a numpy reference of LCE's semantics bit for
    bit (float output transform included)."""
    rng = np.random.default_rng(5)
    firmware = toolchain.build(get_board(board), {"engine": project.engine_files(),
                                                  "app": [project.FIRMWARE_DIR / "bconv_case.c"]},
                               tmp_path, include_dirs=project.ENGINE_INCLUDES, stack_bytes=16384)
    cases = [(64, 32, 3, 1, 1), (45, 12, 3, 2, 1), (128, 20, 1, 1, 1), (32, 64, 3, 1, 2), (96, 36, 2, 2, 1),
             (256, 24, 3, 1, 1),  # 72 words deep, more than one chunk of the M4 kernel
             (32, 16, 1, 1, 1), (64, 16, 1, 1, 1), (96, 8, 1, 1, 1), (224, 16, 1, 1, 1)]  # 1, 2, 3, 7 words deep
    tiles = (4, 12, 64, 8, 20, 16, 8, 64, 12, 20)  # of several column groups: the M4 kernel steps between groups
    for (cin, cout, k, stride, dilation), tile in zip(cases, tiles, strict=True):
        in_h, in_w = 9, 8
        eff = (k - 1) * dilation + 1
        oh, ow = -(-in_h // stride), -(-in_w // stride)
        pt = max((oh - 1) * stride + eff - in_h, 0) // 2
        pl = max((ow - 1) * stride + eff - in_w, 0) // 2
        words = (cin + 31) // 32
        mask = np.array([0xFFFFFFFF] * (words - 1) + [(1 << (cin - 32 * (words - 1))) - 1 if cin % 32 else 0xFFFFFFFF],
                        np.uint64).astype(np.uint32)
        x = rng.integers(0, 2**32, (in_h, in_w, words), dtype=np.uint64).astype(np.uint32) & mask
        w = (rng.integers(0, 2**32, (cout, k * k, words), dtype=np.uint64).astype(np.uint32) & mask).reshape(cout, -1)
        blocked = _channel_blocked(w.view(np.int32)).view(np.uint32)  # the blob's layout (kernels/bgemm.h)
        mult = rng.normal(0, 0.1, cout).astype(np.float32)
        bias = rng.normal(0, 2, cout).astype(np.float32)
        header = (in_h, in_w, cin, cout, k, k, stride, stride, dilation, dilation, pt, pl, oh, ow, tile)
        (tmp_path / "case.bin").write_bytes(np.array(header, np.int32).tobytes() + x.tobytes() + blocked.tobytes()
                                            + mult.tobytes() + bias.tobytes())
        run = qemu.run(firmware, tmp_path, timeout=300)
        assert run.returncode == 0, run.console
        got = np.fromfile(tmp_path / "out.bin", np.float32).reshape(oh, ow, cout)
        expected = _bconv_reference(x, w, mult, bias, header)
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (board, cin, cout, k, stride)


@pytest.fixture(scope="module")
def reactnet_blobs():
    """The ReActNet-shaped test model's flatbuffer and its fused and unfused engine blobs."""
    from mcu_models import reactnet_like

    pytest.importorskip("tensorflow")

    from convert.blob import compile_blob

    flatbuffer = reactnet_like()
    return flatbuffer, compile_blob(flatbuffer, memory_fusion=True).data, compile_blob(flatbuffer).data


def test_model_on_netduinoplus2_agrees_with_host_lce(reactnet_blobs, tmp_path):
    """The whole model as firmware on the emulated STM32F405: same top-1 as LCE's interpreter on every image, logits
    within float rounding, the fused blob bit-identical to the unfused one on the core, exact instruction counts."""
    _counting()
    from mcu_models import CLASSES, SHAPE, images

    from runtime.remote_measure import _lce_runner

    flatbuffer, fused, unfused = reactnet_blobs
    x = images(48)
    board = get_board("netduinoplus2")
    config = project.model_config(fused, [1, *SHAPE], CLASSES)
    ev = evaluate(board, fused, config, x, tmp_path / "fused")
    run = _lce_runner(flatbuffer, 1)[0]
    reference = np.stack([run(x[i:i + 1]).reshape(-1) for i in range(len(x))])
    assert np.array_equal(ev.logits.argmax(axis=1), reference.argmax(axis=1))
    assert np.abs(ev.logits - reference).max() <= 1e-4 * max(1.0, float(np.abs(reference).max()))
    plain = evaluate(board, unfused, project.model_config(unfused, [1, *SHAPE], CLASSES), x, tmp_path / "unfused")
    assert np.array_equal(ev.logits.view(np.uint32), plain.logits.view(np.uint32))
    assert ev.kernel == "cortex-m-dsp"
    assert ev.instructions_per_inference > 0 and ev.binary_macs_per_instruction is not None
    assert 0 < ev.stack_peak < board.stack.size
    assert ev.footprint.arena < plain.footprint.arena  # fusion drops the full-resolution float tensors


def test_export_builds_and_runs_on_qemu(reactnet_blobs, tmp_path):
    """`bitat-edge mcu export` writes a project whose own Makefile builds it and runs it on QEMU's board."""
    from click.testing import CliRunner
    from mcu_models import CLASSES, SHAPE, images

    from bitat_edge.manifest import DeploySection, InputSpec, Manifest
    from runtime.mcu.cli import cli

    flatbuffer, fused, _ = reactnet_blobs
    deploy = tmp_path / "run" / "deploy"
    deploy.mkdir(parents=True)
    BundleDir(deploy).model("lce").write_bytes(flatbuffer)
    BundleDir(deploy).mcu_blob.write_bytes(fused)
    np.savez(BundleDir(deploy).eval, x=images(2), y=np.array([1, 2]))
    Manifest(model_name="reactnet_like_w1a1", input=InputSpec(shape=[1, *SHAPE], layout="NHWC"),
             classes=[f"c{i}" for i in range(CLASSES)],
             deploy=DeploySection(input_shape=[1, *SHAPE], top1_is="accuracy", reference_top1={}),
             producer="device_tests/test_mcu_qemu.py").save(BundleDir(deploy).manifest)
    out = tmp_path / "project"
    result = CliRunner().invoke(cli, ["export", "--bundle", str(deploy), "--board", "netduinoplus2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "built: flash" in result.output
    done = subprocess.run(["make", "-s", "-C", str(out), "run"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(label 1)" in done.stdout + done.stderr
    again = CliRunner().invoke(cli, ["export", "--bundle", str(deploy), "--board", "netduinoplus2", "--out", str(out)])
    assert again.exit_code != 0 and "--force" in again.output


DEFAULT_BUNDLE = REPO / "device_tests" / "fixtures" / "fmnist_bitat_deploy"  # see fixtures/trim_bundle.py


@pytest.mark.slow
def test_default_model_500_images_on_stm32f405(tmp_path):
    """The default bundle of the MCU benchmark (its first 500 eval images) on the emulated STM32F405: fits
    1 MiB flash and 192 KiB SRAM, and agrees with the host LCE interpreter on every image."""
    _counting()
    done = subprocess.run([sys.executable, str(REPO / "runtime" / "bench.py"), "--device", "netduinoplus2",
                           "--bundle", str(DEFAULT_BUNDLE), "--eval-samples", "500", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = tmp_path.glob("netduinoplus2-*/results.json")
    (m,) = json.loads(record.read_text())["measurements"]
    assert m["accuracy"]["total"] == 500
    assert m["accuracy"]["agreement_top1"] >= 0.9995
    assert m["footprint"]["flash_code"] + m["footprint"]["flash_model"] + m["footprint"]["flash_data"] <= 1024 * 1024
    assert m["footprint"]["sram_arena"] + m["footprint"]["sram_other"] <= 128 * 1024
    assert m["footprint"]["sram_stack"] <= 64 * 1024


def test_footprint_from_the_map_matches_the_elf_sections(tmp_path):
    """The map parser's numbers are the ELF's section sizes, and the stack high-water mark is measured."""
    source = tmp_path / "app.c"
    source.write_text(
        '#include <stdint.h>\n#include "bsp.h"\n'
        '__attribute__((section(".rodata.bitat_model"), aligned(16))) const uint8_t blob[1000] = {7};\n'
        '__attribute__((section(".bss.bitat_arena"), aligned(16))) uint8_t arena[5000];\n'
        "int counter = 3;\nint zeros[10];\n"
        "int main(void) { arena[0] = (uint8_t)(blob[0] + counter + zeros[1]); return arena[0] == 10 ? 0 : 1; }\n")
    firmware = toolchain.build(get_board("netduinoplus2"), {"app": [source]}, tmp_path / "build", stack_bytes=4096)
    from runtime.mcu.footprint import read_map

    fp = read_map(firmware.map)
    sizes = subprocess.run(["arm-none-eabi-size", "-A", str(firmware.elf)], capture_output=True, text=True).stdout
    section = {line.split()[0]: int(line.split()[1]) for line in sizes.splitlines()[2:] if len(line.split()) >= 2}
    assert fp.model == section[".model"] == 1000
    assert fp.arena == section[".arena"] == 5000
    assert fp.data_bss == section[".data"] + section[".bss"] and section[".data"] >= 4
    assert sum(fp.code.values()) == section[".text"] + section[".vectors"] + section.get(".ARM.exidx", 0)
    assert fp.code["app"] > 0 and fp.code["bsp"] > 0 and fp.stack_reserved == 4096
    run = qemu.run(firmware, tmp_path, timeout=60)
    assert run.returncode == 0, run.console
