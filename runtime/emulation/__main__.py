"""``python -m runtime.emulation setup [--arch aarch64]``: build the counting plugin and the sysroots now.

Each part is cached (see ``runtime.emulation.cache``); a second run only checks and prints the paths.
"""

from __future__ import annotations

import sys

import click

from runtime.emulation.plugin import ensure_plugin
from runtime.emulation.sysroot import NO_LITERT, TARGETS, ensure_sysroot
from runtime.errors import BenchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Tools for measuring under QEMU (instruction-counting plugin, aarch64 Python + LiteRT sysroot)."""


@cli.command()
@click.option("--arch", "arches", multiple=True, type=click.Choice(sorted(TARGETS)), default=sorted(TARGETS),
              show_default=True, help="Sysroots to assemble (repeatable).")
@click.option("--plugin-only", is_flag=True, help="Build only the instruction-counting plugin.")
def setup(arches: tuple[str, ...], plugin_only: bool) -> None:
    """Fetch and build what emulated measurements need (cached; fast when already done)."""
    try:
        click.echo(f"instruction-counting plugin: {ensure_plugin()}")
        for arch in () if plugin_only else arches:
            click.echo(f"{arch} Python + LiteRT sysroot: {ensure_sysroot(arch).root}")
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted; nothing half-built was kept", err=True)
        sys.exit(130)
    for reason in NO_LITERT.values():
        click.echo(f"note: {reason}")


if __name__ == "__main__":
    cli()
