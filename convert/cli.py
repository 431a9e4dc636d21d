"""``bitat-edge convert``: a run directory or any ONNX classifier -> an LCE deploy bundle."""

from __future__ import annotations

from pathlib import Path

import click

from bitat_edge.manifest import ManifestError
from convert.errors import ConvertError
from convert.ops import SUPPORTED_OPS


def _convert(**kwargs) -> None:
    from convert.bundle import convert_model

    try:
        result = convert_model(**kwargs)
    except (ConvertError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    par = result["parity"]["engines"]
    click.echo(f"wrote {kwargs['out_dir']}: LceBconv2d {result['lce_bconv2d']} / binary-intent "
               f"{result['layers']['binary_intent']}, LCE/fp32 size {result['lce_over_fp32']:.3f}, "
               f"conversion {result['timing_s']['conversion_total']:.1f} s")
    for name, e in par.items():
        acc = f", top-1 {100 * e['top1']:.2f} %" if "top1" in e else ""
        click.echo(f"  {name}: agreement {100 * e['agreement']:.2f} % with {result['parity']['reference']}, "
                   f"max |logit diff| {e['max_abs_logit_diff']:.3g} ({e['images_off']} images > 1e-4){acc}")


@click.group(help="Convert ONNX to an LCE flatbuffer and fp32/int8 TFLite baselines, with a parity report.")
def cli() -> None:
    """The convert stage's command group."""


@cli.command("run")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--target", type=click.Choice(["arm", "xcore"]), default="arm", show_default=True,
              help="LCE target (same-zero padding is arm-only).")
def run_cmd(run_dir: Path, target: str) -> None:
    """Convert a training run: RUN_DIR/model.onnx + manifest.json + eval.npz + calib.npz -> RUN_DIR/deploy."""
    needed = ["model.onnx", "manifest.json", "eval.npz", "calib.npz"]
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise click.ClickException(f"{run_dir}: not an exported run (missing {', '.join(missing)}); "
                                   "train and export it first (make train)")
    _convert(onnx_path=run_dir / "model.onnx", manifest_path=run_dir / "manifest.json", out_dir=run_dir / "deploy",
             eval_npz=run_dir / "eval.npz", calib_npz=run_dir / "calib.npz", target=target)


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
@click.option("--target", type=click.Choice(["arm", "xcore"]), default="arm", show_default=True)
def onnx_cmd(model: Path, manifest_path: Path, eval_npz: Path | None, calib_npz: Path | None, out_dir: Path,
             target: str) -> None:
    """Convert any ONNX classifier in the supported op set (see `ops`)."""
    _convert(onnx_path=model, manifest_path=manifest_path, out_dir=out_dir, eval_npz=eval_npz,
             calib_npz=calib_npz, target=target)


@cli.command("ops")
def ops_cmd() -> None:
    """Print the supported ONNX op set."""
    width = max(len(op) for op in SUPPORTED_OPS)
    for op, how in SUPPORTED_OPS.items():
        click.echo(f"{op:<{width}}  {how}")
