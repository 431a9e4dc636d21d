"""runtime/mcu: the engine on Cortex-M microcontrollers.

Boards and their memory maps (``boards``), linker scripts (``linker``), the cross build
(``toolchain``), footprints from the linker map (``footprint``), runs under ``qemu-system-arm`` with
semihosting and exact instruction counts (``qemu``), and the MCU project export (``export``).
Board support C sources live in ``bsp/``, the evaluation firmware in ``firmware/``.
"""
