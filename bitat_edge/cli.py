"""The ``bitat-edge`` console script: one group over the stages' own click groups.

Each stage's CLI is imported only when its subcommand runs, so a runtime-only install
(a Raspberry Pi) can use ``bitat-edge bench`` without torch or TensorFlow.
"""

from __future__ import annotations

import importlib

import click

from bitat_edge import __version__

STAGES = {
    "train": ("train.cli", "cli", "Train float and quantized models (PyTorch)."),
    "convert": ("convert.cli", "cli", "Convert ONNX to an LCE flatbuffer and TFLite baselines."),
    "bench": ("runtime.bench", "cli", "Measure accuracy and latency of a deploy bundle on a device."),
    "mcu": ("runtime.mcu.cli", "cli", "Cortex-M microcontrollers: boards, MCU project export."),
}


class StageGroup(click.Group):
    """A group whose subcommands are the stages' CLIs, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(STAGES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in STAGES:
            return None
        module_name, attr, _ = STAGES[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = "runtime" if name in ("bench", "mcu") else name
            raise click.ClickException(
                f"the '{name}' stage needs packages that are not installed ({exc.name or exc}); "
                f"install them with: pip install 'bitat-edge[{extra}]'"
            ) from None
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the stages from ``STAGES`` without importing them (a partial install still gets help)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, _, help_text) in STAGES.items()])


@click.group(cls=StageGroup, help="bitat-edge: PyTorch 1-bit networks to Larq Compute Engine on ARM.")
@click.version_option(__version__, prog_name="bitat-edge")
def main() -> None:
    """Entry point of the console script."""


if __name__ == "__main__":
    main()
