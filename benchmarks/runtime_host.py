"""Host benchmark: LCE model vs fp32 vs int8 TFLite of the same network, measured in one run.

    .venv/bin/python benchmarks/runtime_host.py --bundle runs/fmnist_bitat [--runs 100 --windows 5]

Runs one bench session on `host` (results under <run>/bench/host-<stamp>/ as usual) and writes
<run>/bench/runtime_host.json: medians, spreads, top-1 (vs the convert stage's figure) and the
fp32/lce and int8/lce latency ratios. x86 has no optimized LCE kernels (LCE issue 591): the ratios
describe this host, not an ARM device.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitat_edge.atomic import write_json  # noqa: E402
from runtime.bundle import MODEL_KINDS, load_bundle  # noqa: E402
from runtime.devices import resolve_device  # noqa: E402
from runtime.errors import BenchError  # noqa: E402
from runtime.protocol import Protocol  # noqa: E402
from runtime.session import run_session  # noqa: E402


@click.command()
@click.option("--bundle", default="runs/fmnist_bitat", show_default=True, help="Deploy or run directory.")
@click.option("--runs", default=100, show_default=True, help="Timed runs per window.")
@click.option("--windows", default=5, show_default=True, help="Timing windows.")
@click.option("--warmup", default=10, show_default=True, help="Untimed warm-up runs.")
@click.option("--threads", default=1, show_default=True, help="Interpreter threads.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Result file (default <run>/bench/runtime_host.json).")
def main(bundle: str, runs: int, windows: int, warmup: int, threads: int, out: str | None) -> None:
    """Measure the bundle's three flatbuffers on this machine and write their latency ratios."""
    try:
        loaded = load_bundle(bundle, MODEL_KINDS)
        session_dir, session = run_session(
            resolve_device("host"), loaded, MODEL_KINDS, "auto", Protocol(warmup, runs, windows, threads),
            accuracy=True, eval_samples=None, profile=False, binary=None, bench_root=None, timeout=3600,
            echo=click.echo,
        )
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    summary = {
        "benchmark": "runtime_host",
        "date": session["date"],
        "bundle": session["bundle"],
        "session": str(session_dir),
        "host": session["facts"],
        "protocol": session["protocol"],
        "models": {
            m["model"]: {
                "engine": m["engine"], "engine_version": m["engine_version"], "sha256": m["model_sha256"],
                "bytes": m["model_bytes"], "median_ms": m["latency"]["overall"]["median"],
                "iqr_ms": m["latency"]["overall"]["iqr"], "min_ms": m["latency"]["overall"]["min"],
                "peak_memory_mb": m["peak_memory_mb"], "top1": (m["accuracy"] or {}).get("top1"),
                "reference_top1": m["reference_top1"], "matches_reference": m["matches_reference"],
            }
            for m in session["measurements"]
        },
        "ratios": session["ratios"],
    }
    path = Path(out) if out else loaded.run_dir / "bench" / "runtime_host.json"
    write_json(path, summary)
    click.echo(f"ratios: {summary['ratios']}")
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
