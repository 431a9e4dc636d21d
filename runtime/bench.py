"""Measure a deploy bundle on a device: ``python runtime/bench.py --device rpi4`` (or ``bitat-edge bench``).

``bench.py [OPTIONS]`` measures; ``bench.py doctor [OPTIONS]`` checks a target first.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script: import the `runtime` package from the checkout, and keep runtime/ itself off
    # sys.path so its module names (errors, session, ...) cannot shadow other packages.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import click  # noqa: E402

from bitat_edge.layout import MODEL_KINDS, RunDir  # noqa: E402
from runtime.bundle import load_bundle  # noqa: E402
from runtime.devices import inventory_path, resolve_device  # noqa: E402
from runtime.emulation.sysroot import NO_LITERT  # noqa: E402
from runtime.engines import ENGINES  # noqa: E402
from runtime.errors import BenchError  # noqa: E402
from runtime.protocol import Protocol  # noqa: E402
from runtime.request import SessionRequest  # noqa: E402

DEFAULT_BUNDLE = "runs/fmnist_bitat"


def _target_options(func):
    """Options shared by measuring and doctor: which device, how to reach it, which bundle and binary."""
    for option in reversed([
        click.option("--device", default="host", show_default=True,
                     help="Device profile: host, rpi4, rpi3, android, qemu-aarch64, qemu-armv7, the emulated "
                          "microcontroller boards netduinoplus2, mps2-an386, mps2-an500, mps3-an547, or an inventory "
                          "name."),
        click.option("--bundle", default=DEFAULT_BUNDLE, show_default=True,
                     help="A deploy directory, or a run directory that contains deploy/."),
        click.option("--transport", default=None,
                     help="Override how to reach the device: local, qemu, ssh://user@host[:port], adb or adb:SERIAL."),
        click.option("--inventory", default=None, type=click.Path(dir_okay=False),
                     help="Inventory YAML with addresses/keys (default $BITAT_EDGE_INVENTORY, "
                          "then ~/.config/bitat-edge/devices.yaml)."),
        click.option("--binary", default=None, type=click.Path(dir_okay=False),
                     help="lce_benchmark_model for the target (default $LCE_BENCHMARK_MODEL, "
                          "then runtime/bin/lce_benchmark_model_<arch>)."),
    ]):
        func = option(func)
    return func


def _fail(exc: BenchError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_target_options
@click.option("--engine", type=click.Choice(["auto", *ENGINES]),
              default="auto", show_default=True,
              help="auto: interpreters on the host; on emulated devices LiteRT in the emulation sysroot for "
                   "the TFLite baselines and the benchmark binary for the LCE model; the benchmark binary on "
                   "devices (interpreters over ssh when the device has Python and no binary).")
@click.option("--model", "model", type=click.Choice([*MODEL_KINDS, "all"]), default="all", show_default=True,
              help="Which flatbuffer(s) of the bundle to measure.")
@click.option("--threads", type=int, default=None, help="Interpreter threads (default: the device profile's).")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed runs before the windows.")
@click.option("--runs", type=int, default=50, show_default=True, help="Timed runs per window.")
@click.option("--windows", type=int, default=3, show_default=True, help="Number of timing windows.")
@click.option("--accuracy/--no-accuracy", default=True, show_default=True,
              help="Top-1 on the bundle's eval.npz (interpreter engines).")
@click.option("--eval-samples", type=int, default=None, help="Use only the first N eval samples (default: all).")
@click.option("--profile", is_flag=True, help="Per-layer times (benchmark binary's op profiling) and a bar chart.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Bench results root (default <run>/bench); sessions go to <out>/<device>-<UTC stamp>/.")
@click.option("--timeout", type=float, default=900.0, show_default=True, help="Seconds allowed per command on the target.")
@click.option("--count-images", type=click.IntRange(min=1), default=3, show_default=True,
              help="Emulated devices: eval images whose invokes are counted (EMULATED instructions, not time).")
@click.pass_context
def cli(ctx: click.Context, device: str, bundle: str, transport: str | None, inventory: str | None,
        binary: str | None, engine: str, model: str, threads: int | None, warmup: int, runs: int, windows: int,
        accuracy: bool, eval_samples: int | None, profile: bool, out: str | None, timeout: float,
        count_images: int) -> None:
    """Measure accuracy and latency of a deploy bundle on a device (default: this machine)."""
    if ctx.invoked_subcommand is not None:
        return
    from runtime.results import results_text
    from runtime.session import run_session

    kinds = MODEL_KINDS if model == "all" else (model,)
    try:
        target = resolve_device(device, inventory_path(inventory), transport)
        if target.board and model == "all":
            kinds = ("lce",)  # a microcontroller runs the LCE model's engine blob only
            click.echo(f"{device}: measuring the LCE model (the firmware runs the bundle's engine blob)")
        elif model == "all" and engine == "auto" and target.arch in NO_LITERT and target.capabilities.python == "sysroot":
            click.echo(f"note: measuring the LCE model only: {NO_LITERT[target.arch]}")
            kinds = ("lce",)
        request = SessionRequest(
            device=target, bundle=load_bundle(bundle, kinds), kinds=kinds, engine=engine,
            protocol=Protocol(warmup=warmup, runs=runs, windows=windows, threads=threads or target.threads),
            accuracy=accuracy, eval_samples=eval_samples, profile=profile, binary=binary,
            bench_root=Path(out) if out else None, timeout=timeout, count_images=count_images,
        )
        session_dir, session = run_session(request, echo=click.echo)
    except BenchError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        click.echo("interrupted: nothing was recorded for this session; no emulator or command is left running", err=True)
        ctx.exit(130)
    click.echo("")
    click.echo(results_text(session))
    click.echo(f"results: {session_dir}")


@cli.command()
@_target_options
def doctor(device: str, bundle: str, transport: str | None, inventory: str | None, binary: str | None) -> None:
    """Check a target before measuring: reachable, architecture, 64-bit OS, glibc, binary, Python, LCE ops."""
    from runtime.doctor import run_doctor

    try:
        target = resolve_device(device, inventory_path(inventory), transport)
        # The default bundle is checked only once `make convert` has written it.
        bundle_arg = bundle if bundle != DEFAULT_BUNDLE or RunDir.at(bundle).deploy.is_bundle() else None
        checks = run_doctor(target, bundle_arg, binary)
    except BenchError as exc:
        raise _fail(exc) from None
    for check in checks:
        click.echo(str(check))
    if bundle_arg is None:
        click.echo(f"[skip] LCE op coverage: no bundle at {DEFAULT_BUNDLE}; pass --bundle to check one")
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise click.ClickException(f"{len(failed)} check(s) failed on '{device}'; fix them before measuring")
    click.echo(f"'{device}' is ready to measure")


if __name__ == "__main__":
    cli()
