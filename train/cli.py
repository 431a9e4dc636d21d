"""``bitat-edge train``: run, resume or reuse a training run; evaluate, export or summarize a model.

Every user mistake (``train.errors.TrainError``, ``bitat_edge.schema.SchemaError`` and so
``ManifestError``) reaches the user as one line, never a traceback: the group converts them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bitat_edge.layout import RunDir
from bitat_edge.schema import SchemaError
from train.config import ConfigError, TrainConfig, load_config, read_yaml, run_config_diff
from train.errors import TrainError
from train.rundir import read_summary


class _OneLineErrors(click.Group):
    """A command group whose commands report user mistakes as one ``Error:`` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (TrainError, SchemaError) as exc:
            raise click.ClickException(str(exc)) from None


def _load(config: Path, overrides: tuple[str, ...], data_dir: Path | None = None) -> TrainConfig:
    if data_dir is not None:
        overrides = (*overrides, f"data.data_dir={json.dumps(str(data_dir))}")
    return load_config(config, overrides)


def _reuse_finished(run: RunDir, cfg: TrainConfig) -> bool:
    """True when ``run`` finished with this config; a finished run with another config is an error."""
    if not run.summary.is_file():
        return False
    try:
        stored = read_yaml(run.config)
    except ConfigError as exc:
        raise click.ClickException(f"{run.root} holds a finished run whose config cannot be read ({exc})") from None
    differ = run_config_diff(stored, cfg)
    if differ:
        raise click.ClickException(
            f"{run.root} holds a finished run with a different config (differs at: {', '.join(differ[:6])}); "
            "use another --out"
        )
    try:
        top1 = read_summary(run).get("test_top1")
    except SchemaError:
        top1 = None
    shown = f" (test top-1 {100 * top1:.2f}%)" if isinstance(top1, (int, float)) else ""
    click.echo(f"reusing the finished run in {run.root}{shown}")
    return True


def _finish_export(run: RunDir, cfg: TrainConfig) -> None:
    """Export a finished run that was cut off during its export (the export writes the manifest last)."""
    if cfg.run.export and not run.manifest.is_file():
        from train.export import export_run

        click.echo(f"its export was not finished; exported {export_run(run.root)}")


@click.group(name="train", cls=_OneLineErrors, help="Train float and quantized models (PyTorch).")
def cli() -> None:
    """The train stage's command group."""


@cli.command("run")
@click.option("--config", "config", type=click.Path(path_type=Path), required=True,
              help="Experiment YAML (see configs/).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run directory [default: runs/<config name>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optim.epochs=3 (value parsed as YAML); repeatable.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Dataset folder (same as --set data.data_dir=DIR) [default: $FASHION_MNIST_DIR / $CIFAR_DIR, "
                   "then the system location].")
@click.option("--resume/--no-resume", default=None,
              help="Continue from OUT/checkpoints/last.pt, or start over there. Default: resume when it exists.")
@click.option("--reuse", is_flag=True,
              help="If OUT holds a finished run with the same config, keep it and exit; if unfinished, resume it.")
def run_command(config: Path, out: Path | None, overrides: tuple[str, ...], data_dir: Path | None,
                resume: bool | None, reuse: bool) -> None:
    """Train a model as configured; writes config.yaml, env.json, metrics.csv, checkpoints, summary.json."""
    cfg = _load(config, overrides, data_dir)
    run = RunDir(out if out is not None else Path("runs") / cfg.name)
    if reuse and resume is False:
        raise click.ClickException("--reuse keeps or resumes a run, --no-resume starts over: pass only one")
    if reuse and _reuse_finished(run, cfg):
        _finish_export(run, cfg)
        return
    if resume is None:
        resume = run.last.is_file()
    elif resume and not run.last.is_file():
        raise click.ClickException(f"--resume: {run.last} does not exist; drop --resume to start a new run")
    click.echo(f"{'resuming' if resume else 'starting'} run {cfg.name!r} in {run.root}")
    from train.engine import train

    summary = train(cfg, run.root, resume=resume)
    click.echo(f"done: test top-1 {100 * summary['test_top1']:.2f}% in {summary['wall_seconds']:.0f} s; "
               f"run directory {run.root}")


@cli.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Dataset folder, when it moved since training [default: the one in the run's config].")
def eval_command(run_dir: Path, device: str, data_dir: Path | None) -> None:
    """Top-1 accuracy of RUN_DIR/checkpoints/best.pt on the test split."""
    from train.assembly import build_from_checkpoint
    from train.data import build_datasets
    from train.distributed import DistEnv, resolve_device
    from train.engine import evaluate

    try:
        target = resolve_device(device, 0)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    model, cfg = build_from_checkpoint(RunDir(run_dir).best, target)
    if data_dir is not None:
        cfg.data = cfg.data.model_copy(update={"data_dir": str(data_dir)})
    splits = build_datasets(cfg.data, cfg.seed)
    loss, top1, count = evaluate(model, splits.test, cfg.data.eval_batch_size, target, DistEnv())
    click.echo(f"test top-1 {100 * top1:.2f}% (loss {loss:.4f}) on {count} images: {run_dir}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
def export_command(run_dir: Path) -> None:
    """Write RUN_DIR/model.onnx and manifest.json from the best checkpoint."""
    from train.export import export_run

    click.echo(f"exported {export_run(run_dir)}")


@cli.command("summary")
@click.option("--config", "config", type=click.Path(path_type=Path), required=True, help="Experiment YAML.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key; repeatable.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Dataset folder.")
def summary_command(config: Path, overrides: tuple[str, ...], data_dir: Path | None) -> None:
    """Print the configured model in its final, exported form (layers, parameters, precisions, MACs).

    The method's schedule is advanced to the run's last step, calibrating on seeded noise: the
    structure is what matters here, not the statistics."""
    import torch

    from train.assembly import assemble_offline, schedule_lengths
    from train.data import build_datasets
    from train.quant.summary import model_summary

    cfg = _load(config, overrides, data_dir)
    splits = build_datasets(cfg.data, cfg.seed)
    _, steps_per_epoch, total_steps = schedule_lengths(cfg, len(splits.train))
    method, model, ctx = assemble_offline(cfg, splits.info, torch.device("cpu"), steps_per_epoch=steps_per_epoch,
                                          total_steps=total_steps, log=click.echo)
    method.on_step_start(total_steps - 1, model, ctx)
    click.echo(model_summary(model.eval(), (1, *splits.info.input_shape)))


if __name__ == "__main__":
    cli()
