"""``bitat-edge convert``: a run directory or any ONNX classifier -> an LCE deploy bundle.

Both conversions run ``convert.pipeline.convert``. A user mistake (a bad ONNX file, manifest, eval or
calibration set, an output directory that is not a bundle, or an unwritable bundle) and a missed
parity gate are one line, never a traceback. TensorFlow is imported only once the inputs are checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bitat_edge.manifest import INTEGER_FORMS
from bitat_edge.schema import SchemaError
from convert.errors import ConvertError
from convert.gate import (
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_MIN_INT8_AGREEMENT,
    GRID_MIN_AGREEMENT,
    GRID_MIN_INT8_AGREEMENT,
    ParityGate,
)

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


def _gate_options(func):
    """The parity gate's thresholds (``convert.gate.ParityGate``), as options of both conversions."""
    percent = click.FloatRange(0, 100)
    for option in reversed([
        click.option("--min-agreement", type=percent, default=None,
                     help="Least top-1 agreement (%) of LCE, fp32 TFLite and ONNX Runtime with the reference; "
                          f"below it no bundle is written [default: {100 * DEFAULT_MIN_AGREEMENT:g}; "
                          f"{100 * GRID_MIN_AGREEMENT:g} for a graph with integer grids]."),
        click.option("--min-int8-agreement", type=percent, default=None,
                     help="Least top-1 agreement (%) of the integer model (int8 or int16x8 form) with the reference "
                          f"[default: {100 * DEFAULT_MIN_INT8_AGREEMENT:g}; {100 * GRID_MIN_INT8_AGREEMENT:g} for a "
                          "graph with integer grids, whose integer model holds them exactly]."),
        click.option("--max-logit-error", type=click.FloatRange(0), default=None,
                     help="Largest max |logit diff| allowed for LCE, fp32 TFLite and ONNX Runtime (default: not "
                          "checked; a binary net may flip a few near-zero signs)."),
    ]):
        func = option(func)
    return func


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else round(percent / 100, 6)


def _gate(min_agreement: float | None, min_int8_agreement: float | None, max_logit_error: float | None) -> ParityGate:
    return ParityGate(_fraction(min_agreement), _fraction(min_int8_agreement), max_logit_error)


def _echo(result: ConvertResult) -> None:
    report = result.report
    click.echo(f"wrote {result.bundle}: LceBconv2d {report['lce_bconv2d']} / binary-intent "
               f"{report['layers']['binary_intent']}, LCE/fp32 size {report['lce_over_fp32']:.3f}, "
               f"conversion {result.seconds['conversion_total']:.1f} s, total {result.seconds['total']:.1f} s")
    click.echo(f"integer model (tflite_int8): {report['int8_form']} form ({INTEGER_FORMS[report['int8_form']]})")
    par = report["parity"]
    for name, e in par["engines"].items():
        acc = f", top-1 {100 * e['top1']:.2f} %" if "top1" in e else ""
        click.echo(f"  {name}: agreement {100 * e['agreement']:.2f} % with {par['reference']}, "
                   f"max |logit diff| {e['max_abs_logit_diff']:.3g} ({e['images_off']} images > 1e-4){acc}")
    gate = report["gate"]
    click.echo(f"parity gate passed: agreement >= {100 * gate['min_agreement']:.2f} % "
               f"(int8 >= {100 * gate['min_int8_agreement']:.2f} %)"
               + (f", max |logit diff| <= {gate['max_logit_error']:g}" if gate["max_logit_error"] is not None else ""))


@click.group(help="Convert ONNX to an LCE flatbuffer and fp32/int8 TFLite baselines, with a parity report.")
def cli() -> None:
    """The convert stage's command group."""


@cli.command("run")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--target", type=click.Choice(TARGETS), default="arm", show_default=True,
              help="LCE target (same-zero padding is arm-only).")
@_gate_options
def run_cmd(run_dir: Path, target: str, **gate: float | None) -> None:
    """Convert an exported training run (its ONNX model, manifest, eval and calibration sets) into its deploy bundle."""
    from convert.pipeline import ConvertRequest, convert

    with _one_line_errors():
        result = convert(ConvertRequest.for_run(run_dir, target=target, gate=_gate(**gate)))
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
              help="Bundle directory to write: new, empty, or a previous bundle (replaced atomically).")
@click.option("--target", type=click.Choice(TARGETS), default="arm", show_default=True)
@_gate_options
def onnx_cmd(model: Path, manifest_path: Path, eval_npz: Path | None, calib_npz: Path | None, out_dir: Path,
             target: str, **gate: float | None) -> None:
    """Convert any ONNX classifier in the supported op set (see `ops`)."""
    from convert.pipeline import ConvertRequest, convert

    with _one_line_errors():
        result = convert(ConvertRequest(model, manifest_path, out_dir, eval_npz, calib_npz, target,
                                        gate=_gate(**gate)))
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


if __name__ == "__main__":
    cli()
