"""``bitat-edge convert``: a run directory or any ONNX classifier -> an LCE deploy bundle.

Both conversions run ``convert.pipeline.convert``. A user mistake (a bad ONNX file, manifest, eval or
calibration set, or an unwritable bundle) is one line, never a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bitat_edge.schema import SchemaError
from convert.errors import ConvertError

if TYPE_CHECKING:
    from convert.pipeline import ConvertResult

TARGETS = ("arm", "xcore")
"""LCE's conversion targets (same-zero padding is arm-only)."""


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """A convert, manifest or schema error becomes click's one-line ``Error: ...`` (exit 1)."""
    try:
        yield
    except (ConvertError, SchemaError) as exc:  # SchemaError includes bitat_edge.manifest.ManifestError
        raise click.ClickException(str(exc)) from None


def _echo(result: ConvertResult) -> None:
    report = result.report
    click.echo(f"wrote {result.bundle}: LceBconv2d {report['lce_bconv2d']} / binary-intent "
               f"{report['layers']['binary_intent']}, LCE/fp32 size {report['lce_over_fp32']:.3f}, "
               f"conversion {result.seconds['conversion_total']:.1f} s, total {result.seconds['total']:.1f} s")
    par = report["parity"]
    for name, e in par["engines"].items():
        acc = f", top-1 {100 * e['top1']:.2f} %" if "top1" in e else ""
        click.echo(f"  {name}: agreement {100 * e['agreement']:.2f} % with {par['reference']}, "
                   f"max |logit diff| {e['max_abs_logit_diff']:.3g} ({e['images_off']} images > 1e-4){acc}")


@click.group(help="Convert ONNX to an LCE flatbuffer and fp32/int8 TFLite baselines, with a parity report.")
def cli() -> None:
    """The convert stage's command group."""


@cli.command("run")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--target", type=click.Choice(TARGETS), default="arm", show_default=True,
              help="LCE target (same-zero padding is arm-only).")
def run_cmd(run_dir: Path, target: str) -> None:
    """Convert an exported training run (its ONNX model, manifest, eval and calibration sets) into its deploy bundle."""
    from convert.pipeline import ConvertRequest, convert

    with _one_line_errors():
        result = convert(ConvertRequest.for_run(run_dir, target=target))
    _echo(result)


@cli.command("onnx")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--manifest", "manifest_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Manifest JSON describing the input (shape NCHW, mean/std) and classes.")
@click.option("--eval", "eval_npz", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Preprocessed test set (.npz: x float32 NCHW, optional y int64). Default: random inputs.")
@click.option("--calib", "calib_npz", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Calibration images for int8 (.npz: x float32 NCHW). Default: the eval inputs.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Bundle directory to write (replaced atomically).")
@click.option("--target", type=click.Choice(TARGETS), default="arm", show_default=True)
def onnx_cmd(model: Path, manifest_path: Path, eval_npz: Path | None, calib_npz: Path | None, out_dir: Path,
             target: str) -> None:
    """Convert any ONNX classifier in the supported op set (see `ops`)."""
    from convert.pipeline import ConvertRequest, convert

    with _one_line_errors():
        result = convert(ConvertRequest(model, manifest_path, out_dir, eval_npz, calib_npz, target))
    _echo(result)


@cli.command("ops")
@click.option("--markdown", is_flag=True, help="Print the table of convert/SUPPORTED_OPS.md instead.")
def ops_cmd(markdown: bool) -> None:
    """Print the supported ONNX op set (from the op registry)."""
    from convert.lowering import LOWERINGS, SUPPORTED_OPS

    if markdown:
        click.echo(LOWERINGS.markdown_table(), nl=False)
        return
    width = max(len(op) for op in SUPPORTED_OPS)
    for op, how in SUPPORTED_OPS.items():
        click.echo(f"{op:<{width}}  {how}")
