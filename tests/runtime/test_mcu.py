"""runtime/mcu without a cross compiler: boards, linker scripts, fit checks, device profiles, the CLI's errors."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from bitat_edge.bench_record import Footprint
from bitat_edge.layout import BundleDir
from runtime.devices import resolve_device
from runtime.errors import BenchError
from runtime.mcu import linker, project, toolchain
from runtime.mcu.boards import BOARDS, get_board
from runtime.mcu.cli import cli


def test_boards_keep_the_real_parts_limits():
    f405 = get_board("netduinoplus2")
    assert (f405.flash.origin, f405.flash.size) == (0x0800_0000, 1024 * 1024)
    assert f405.ram.size + f405.stack.size == 192 * 1024  # 128 KiB SRAM1+SRAM2 and 64 KiB CCM
    assert f405.stack.origin_for(emulated=False) == 0x1000_0000  # the real CCM
    assert f405.stack.origin_for(emulated=True) == 0x2002_0000  # QEMU maps 192 KiB at 0x20000000 and no CCM
    assert {b.core for b in BOARDS.values()} == {"cortex-m4", "cortex-m7", "cortex-m55"}
    with pytest.raises(KeyError, match="known boards: netduinoplus2, mps2-an386"):
        get_board("stm32f7")


def test_linker_script_places_each_memory_and_the_model_section():
    board = get_board("netduinoplus2")
    real, emulated = linker.render(board, 4096, emulated=False), linker.render(board, 4096)
    assert "ccm (rw) : ORIGIN = 0x10000000, LENGTH = 65536" in real
    assert "ccm (rw) : ORIGIN = 0x20020000, LENGTH = 65536" in emulated
    assert "sram (rw) : ORIGIN = 0x20000000, LENGTH = 131072" in real
    order = [m.group(1) for m in re.finditer(r"^  (\.\w+) ", emulated, re.M)]
    assert order[:3] == [".vectors", ".model", ".text"]  # the vector table first, where the core boots
    assert f"KEEP(*({linker.MODEL_SECTION}))" in emulated and f"KEEP(*({linker.ARENA_SECTION}))" in emulated
    assert re.search(r"\.stack \(NOLOAD\).*?> ccm", emulated, re.S)
    assert "__heap_start" in linker.render(board, 4096, heap_bytes=1024)


def _config(arena: int, blob: int = 1000) -> project.ModelConfig:
    return project.ModelConfig(arena_bytes=arena, input_floats=784, classes=10, blob_bytes=blob, blob_sha256="0" * 64)


def test_a_model_that_does_not_fit_fails_with_the_sizes():
    board = get_board("netduinoplus2")
    project.check_fit(board, _config(120_000))
    with pytest.raises(BenchError, match=r"tensor arena needs 401,423 bytes, the board's sram holds 131,072"):
        project.check_fit(board, _config(401_423))
    with pytest.raises(BenchError, match=r"its blob is 2,000,000 bytes"):
        project.check_fit(board, _config(1000, blob=2_000_000))


def test_link_overflow_is_one_sentence_with_the_region():
    stderr = ("/usr/bin/arm-none-eabi-ld: firmware.elf section `.arena' will not fit in region `sram'\n"
              "/usr/bin/arm-none-eabi-ld: region `sram' overflowed by 273928 bytes\ncollect2: error: ld returned 1\n")
    message = str(toolchain._link_error(get_board("netduinoplus2"), stderr))
    assert message == ("the program does not fit netduinoplus2: its sram (128 KiB) overflowed by 273,928 bytes; "
                       "use a smaller model or a board with more memory")


def test_model_config_reads_the_blob_header():
    header = struct.pack("<5I", 0x4C425442, 1, 64, 0, 5000) + bytes(44)
    config = project.model_config(header, [1, 28, 28, 1], 10)
    assert (config.arena_bytes, config.input_floats, config.blob_bytes) == (5015, 784, 64)  # arena + 15 bytes of alignment
    with pytest.raises(BenchError, match="is not one"):
        project.model_config(b"TFL3" + bytes(60), [1, 28, 28, 1], 10)


def test_board_profiles_resolve_to_the_emulated_boards():
    for name in BOARDS:
        device = resolve_device(name)
        assert device.board == name and device.transport.kind == "qemu-system" and device.emulated
        assert device.arch == get_board(name).arch
        assert device.capabilities.python == "none"


def test_footprint_totals():
    fp = Footprint(flash_code=40_000, flash_model=90_000, flash_data=8, sram_arena=122_927, sram_stack=3_144,
                   sram_other=3_568, flash_limit=1 << 20, sram_limit=192 * 1024)
    assert (fp.flash, fp.sram, fp.sram_total) == (130_008, 126_071, 129_639)
    assert Footprint.model_validate(fp.to_dict()) == fp


def test_cli_lists_boards_and_refuses_bad_exports(built_bundle, tmp_path: Path):
    runner = CliRunner()
    listed = runner.invoke(cli, ["boards"])
    assert listed.exit_code == 0 and all(name in listed.output for name in BOARDS)
    bundle = built_bundle[0]
    unknown = runner.invoke(cli, ["export", "--bundle", str(bundle), "--board", "esp32", "--out", str(tmp_path / "p")])
    assert unknown.exit_code != 0 and "unknown MCU board 'esp32'" in unknown.output
    assert not BundleDir(bundle).mcu_blob.exists()
    missing = runner.invoke(cli, ["export", "--bundle", str(bundle), "--board", "netduinoplus2",
                                  "--out", str(tmp_path / "p")])
    assert missing.exit_code != 0 and "model_mcu.blob" in missing.output and "Traceback" not in missing.output
    assert not (tmp_path / "p").exists()
