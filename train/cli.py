"""``bitat-edge train``: run, resume or reuse a training run; evaluate, export or summarize a model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from train.checkpoint import CheckpointError
from train.config import RESULT_NEUTRAL_KEYS, ConfigError, TrainConfig, config_diff, load_config, read_yaml
from train.data import DatasetError
from train.rundir import RunDir, read_summary

USER_ERRORS = (ConfigError, CheckpointError, DatasetError)


def _load(config: Path, overrides: tuple[str, ...], data_dir: Path | None = None) -> TrainConfig:
    if data_dir is not None:
        overrides = (*overrides, f"data.data_dir={json.dumps(str(data_dir))}")
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _reuse_finished(run: RunDir, cfg: TrainConfig) -> bool:
    """True when ``run`` finished with this config; a finished run with another config is an error."""
    if not run.is_finished():
        return False
    try:
        stored = read_yaml(run.config)
    except ConfigError as exc:
        raise click.ClickException(f"{run.root} holds a finished run whose config cannot be read ({exc})") from None
    differ = config_diff(stored, cfg.to_dict(), ignore=RESULT_NEUTRAL_KEYS)
    if differ:
        raise click.ClickException(
            f"{run.root} holds a finished run with a different config (differs at: {', '.join(differ[:6])}); "
            "use another --out"
        )
    try:
        top1 = read_summary(run).get("test_top1")
    except (OSError, ValueError, AttributeError):
        top1 = None
    shown = f" (test top-1 {100 * top1:.2f}%)" if isinstance(top1, (int, float)) else ""
    click.echo(f"reusing the finished run in {run.root}{shown}")
    return True


@click.group(name="train", help="Train float and quantized models (PyTorch).")
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
        return
    if resume is None:
        resume = run.has_checkpoint()
    elif resume and not run.has_checkpoint():
        raise click.ClickException(f"--resume: {run.last} does not exist; drop --resume to start a new run")
    click.echo(f"{'resuming' if resume else 'starting'} run {cfg.name!r} in {run.root}")
    from train.engine import ResumeError, train

    try:
        summary = train(cfg, run.root, resume=resume)
    except (*USER_ERRORS, ResumeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"done: test top-1 {100 * summary['test_top1']:.2f}% in {summary['wall_seconds']:.0f} s; "
               f"run directory {run.root}")


@cli.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Dataset folder, when it moved since training [default: the one in the run's config].")
def eval_command(run_dir: Path, device: str, data_dir: Path | None) -> None:
    """Top-1 accuracy of RUN_DIR/checkpoints/best.pt on the test split."""
    from train.checkpoint import build_from_checkpoint
    from train.data import build_datasets
    from train.distributed import DistEnv, resolve_device
    from train.engine import evaluate

    try:
        target = resolve_device(device, 0)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        model, cfg = build_from_checkpoint(RunDir(run_dir).best, target)
        if data_dir is not None:
            cfg.data = dataclasses.replace(cfg.data, data_dir=str(data_dir))
        splits = build_datasets(cfg.data, cfg.seed)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    loss, top1, count = evaluate(model, splits.test, cfg.data.eval_batch_size, target, DistEnv())
    click.echo(f"test top-1 {100 * top1:.2f}% (loss {loss:.4f}) on {count} images: {run_dir}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
def export_command(run_dir: Path) -> None:
    """Write RUN_DIR/model.onnx and manifest.json from the best checkpoint."""
    if not RunDir(run_dir).best.is_file():
        raise click.ClickException(f"{RunDir(run_dir).best} not found; train the run first")
    from train.export import export_run

    try:
        path = export_run(run_dir)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exported {path}")


@cli.command("summary")
@click.option("--config", "config", type=click.Path(path_type=Path), required=True, help="Experiment YAML.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key; repeatable.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Dataset folder.")
def summary_command(config: Path, overrides: tuple[str, ...], data_dir: Path | None) -> None:
    """Print the configured model in its deploy form (layers, parameters, precisions, MACs).

    The method's schedule is advanced to the run's last step, calibrating on seeded noise: the
    structure is what matters here, not the statistics."""
    import torch

    from train.checkpoint import build_network, input_shape, noise_batches, prepare_model, schedule_lengths
    from train.data import build_datasets
    from train.engine import data_info_dict
    from train.methods import MethodContext

    cfg = _load(config, overrides, data_dir)
    cpu = torch.device("cpu")
    try:
        splits = build_datasets(cfg.data, cfg.seed)
        data_info = data_info_dict(splits.info)
        _, steps_per_epoch, total_steps = schedule_lengths(cfg, len(splits.train))
        ctx = MethodContext(device=cpu, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                            calibration_batches=noise_batches(data_info, cpu), log=click.echo)
        method, model = prepare_model(cfg, build_network(cfg, data_info), ctx)
        method.on_step_start(total_steps - 1, model, ctx)
        model.eval()
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    shape = (1, *input_shape(data_info))
    try:
        from train.quant.summary import model_summary
    except ImportError:
        total = sum(p.numel() for p in model.parameters())
        click.echo(f"{model}\n{cfg.model.arch}: {total} parameters, input shape {shape}")
        return
    click.echo(model_summary(model, shape))


if __name__ == "__main__":
    cli()
