"""The Cortex-M boards the MCU build targets: core, compiler flags, memory map, QEMU machine.

Each board keeps a real part's limits, not what QEMU happens to map. The STM32F405 (netduinoplus2) has
1 MiB flash at 0x08000000, 128 KiB of SRAM1+SRAM2 at 0x20000000 and 64 KiB of core-coupled memory
(CCM, data only, no DMA) at 0x10000000 (ST RM0090, section 2.3). QEMU 7.2 maps 192 KiB of SRAM at
0x20000000 and no CCM, so the emulated build places the CCM region at 0x20020000 (the extra 64 KiB
QEMU maps); the exported project for the real part uses 0x10000000. We give the CCM the stack and the
SRAM the tensor arena and all other data, so the model's arena must fit 128 KiB less the other data.

The MPS2/MPS3 FPGA images (Arm AN386, AN500, AN547) have MiBs of SRAM; their limits here are the
code/data memories the program uses: AN386/AN500 4 MiB code SSRAM at 0x0 and 4 MiB data SSRAM at
0x20000000; AN547 (Corstone-300) 512 KiB ITCM and 512 KiB DTCM, used through their secure aliases
0x10000000 and 0x30000000 because the core boots in the secure state.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024


@dataclass(frozen=True)
class Region:
    """A memory of the board: the linker script's MEMORY entry."""

    name: str
    origin: int
    size: int
    emulated_origin: int | None = None  # where QEMU maps it, when that differs from the real part

    def origin_for(self, emulated: bool) -> int:
        return self.emulated_origin if emulated and self.emulated_origin is not None else self.origin


@dataclass(frozen=True)
class Board:
    """One target board: its core, how to compile for it, its memories and its QEMU machine."""

    name: str
    description: str
    arch: str  # the instruction set as device profiles name it: thumbv7em | thumbv8.1m
    core: str  # cortex-m4 | cortex-m7 | cortex-m55
    cflags: tuple[str, ...]
    flash: Region  # code, read-only data and the model blob
    ram: Region  # the tensor arena, .data and .bss
    stack: Region  # the stack region (== ram when the board has no separate one)
    qemu_machine: str
    tick_hz: int  # SysTick (core) clock in QEMU; under -icount shift=0 one instruction takes 1 ns

    @property
    def ns_per_tick(self) -> float:
        return 1e9 / self.tick_hz

    @property
    def separate_stack(self) -> bool:
        return self.stack.name != self.ram.name


_M4F = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
_M7 = ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16")
_M55 = ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard")

_MPS2_FLASH = Region("code", 0x0000_0000, 4096 * KIB)
_MPS2_RAM = Region("sram", 0x2000_0000, 4096 * KIB)
_AN547_RAM = Region("dtcm", 0x3000_0000, 512 * KIB)
_F405_RAM = Region("sram", 0x2000_0000, 128 * KIB)


def _mps2(name: str, cpu: str, core: str, cflags: tuple[str, ...]) -> Board:
    """An Arm MPS2 FPGA image: 4 MiB code and 4 MiB data SSRAM, 25 MHz."""
    return Board(name=name, arch="thumbv7em",
                 description=f"Arm MPS2 {name[5:].upper()} ({cpu}, 25 MHz FPGA image): 4 MiB code, 4 MiB data SSRAM",
                 core=core, cflags=cflags, flash=_MPS2_FLASH, ram=_MPS2_RAM, stack=_MPS2_RAM, qemu_machine=name,
                 tick_hz=25_000_000)


BOARDS: dict[str, Board] = {
    board.name: board
    for board in (
        Board(
            name="netduinoplus2",
            arch="thumbv7em",
            description="STM32F405 (Cortex-M4F, 168 MHz): 1 MiB flash, 128 KiB SRAM + 64 KiB CCM",
            core="cortex-m4",
            cflags=_M4F,
            flash=Region("flash", 0x0800_0000, 1024 * KIB),
            ram=_F405_RAM,
            stack=Region("ccm", 0x1000_0000, 64 * KIB, emulated_origin=0x2002_0000),
            qemu_machine="netduinoplus2",
            tick_hz=168_000_000,
        ),
        _mps2("mps2-an386", "Cortex-M4F", "cortex-m4", _M4F),
        _mps2("mps2-an500", "Cortex-M7 with FPv5", "cortex-m7", _M7),
        Board(
            name="mps3-an547",
            arch="thumbv8.1m",
            description="Arm MPS3 AN547 Corstone-300 (Cortex-M55 with MVE/Helium, 32 MHz): 512 KiB ITCM, 512 KiB DTCM",
            core="cortex-m55",
            cflags=_M55,
            flash=Region("itcm", 0x1000_0000, 512 * KIB),
            ram=_AN547_RAM,
            stack=_AN547_RAM,
            qemu_machine="mps3-an547",
            tick_hz=32_000_000,
        ),
    )
}


def get_board(name: str) -> Board:
    """The board called ``name``; a clear error listing the known boards otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise KeyError(f"unknown MCU board '{name}'; known boards: {', '.join(BOARDS)}") from None
