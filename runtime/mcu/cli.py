"""``bitat-edge mcu``: microcontroller boards and the MCU project export."""

from __future__ import annotations

from pathlib import Path

import click

from runtime.errors import BenchError

DEFAULT_BUNDLE = "runs/fmnist_bitat"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run the 1-bit model on Cortex-M microcontrollers: boards, project export.

    To measure a bundle on an emulated board: python runtime/bench.py --device netduinoplus2.
    """


@cli.command()
def boards() -> None:
    """List the boards: name, core, memories, the QEMU machine that emulates it."""
    from runtime.mcu.boards import BOARDS

    for board in BOARDS.values():
        click.echo(f"{board.name:14} {board.core:11} flash {board.flash.size // 1024} KiB, {board.ram.name} "
                   f"{board.ram.size // 1024} KiB" + (f", {board.stack.name} {board.stack.size // 1024} KiB"
                                                       if board.separate_stack else "")
                   + f"  (qemu-system-arm -M {board.qemu_machine})")


@cli.command()
@click.option("--bundle", default=DEFAULT_BUNDLE, show_default=True,
              help="A deploy directory, or a run directory that contains deploy/ (needs model_mcu.blob).")
@click.option("--board", required=True, help="Target board; `bitat-edge mcu boards` lists them.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write the project to.")
@click.option("--force", is_flag=True, help="Replace --out if it exists and is not empty.")
def export(bundle: str, board: str, out: str, force: bool) -> None:
    """Write an MCU project for BOARD: the engine, the model blob as a const array in flash, the two-call API
    (bitat_model_init, bitat_model_invoke), a Makefile and linker script, an example main. The project is
    built here first when arm-none-eabi-gcc is installed, so a model that does not fit fails now."""
    from runtime.bundle import load_bundle
    from runtime.mcu.boards import get_board
    from runtime.mcu.export import export as export_project

    try:
        target = get_board(board)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    try:
        done = export_project(load_bundle(bundle, kinds=("lce",)), target, Path(out), force=force)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    fp = done.footprint
    click.echo(f"wrote {done.root}: {target.name}, blob {done.config.blob_bytes:,} bytes, arena "
               f"{done.config.arena_bytes:,} bytes" + (f"; built: flash {fp.flash:,} of {target.flash.size:,} bytes, "
                                                       f"SRAM {fp.arena + fp.data_bss:,} of {target.ram.size:,} bytes "
                                                       "(+ stack)" if fp else "; not built (no arm-none-eabi-gcc)"))
    click.echo(f"next: make -C {done.root} run   (the demo on QEMU's {target.qemu_machine} board)")


if __name__ == "__main__":
    cli()
