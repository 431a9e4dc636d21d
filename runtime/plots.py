"""Plots from result files (matplotlib, Agg backend, imported lazily): accuracy vs latency, per-layer time."""

from __future__ import annotations

import io
from pathlib import Path

from bitat_edge.atomic import write_bytes
from bitat_edge.bench_record import LayerTime
from runtime.results import typical_column, typical_label


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return write_bytes(path, buffer.getvalue())


def accuracy_vs_latency(rows: list[dict[str, str]], path: Path) -> Path | None:
    """Top-1 vs typical latency, one series per (device, engine, statistic); emulated timings get their own panel."""
    points = [r for r in rows if r.get("top1") not in (None, "") and r.get(typical_column(r)) not in (None, "")]
    if not points:
        return None
    panels = [(flag, title) for flag, title in (("False", "physical / host"), ("True", "EMULATED (QEMU)"))
              if any(str(r["emulated"]) == flag for r in points)]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (flag, title) in zip(axes[0], panels, strict=True):
        series: dict[tuple[str, str, str], list[dict[str, str]]] = {}
        for r in points:
            if str(r["emulated"]) == flag:
                series.setdefault((r["device"], r["engine"], typical_label(r)), []).append(r)
        for (device, engine, label), group in sorted(series.items()):
            xs = [float(r[typical_column(r)]) for r in group]
            ys = [100 * float(r["top1"]) for r in group]
            ax.plot(xs, ys, "o", label=f"{device} · {engine} ({label})")
            for r, x, y in zip(group, xs, ys, strict=True):
                ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("latency per image (ms, log scale; the statistic is in the legend)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def accuracy_vs_instructions(points: list[tuple[str, str, int, float]], path: Path, title: str) -> Path | None:
    """Top-1 vs EMULATED instructions per inference; ``points`` are (series, label, instructions, top-1 0..1)."""
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, series in enumerate(sorted({p[0] for p in points})):
        group = [p for p in points if p[0] == series]
        ax.plot([p[2] for p in group], [100 * p[3] for p in group], "o", label=series)
        for _, label, x, y in group:  # each series labels on its own line, so close points stay readable
            ax.annotate(label, (x, 100 * y), textcoords="offset points", xytext=(4, 4 - 11 * n), fontsize=8)
    ax.set_xlim(left=0, right=1.25 * max(p[2] for p in points))  # linear from 0: the ratios read off directly
    ax.xaxis.set_major_formatter(lambda value, _: f"{value / 1e6:g} M")
    ax.set_xlabel("instructions per inference (EMULATED)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def per_layer_time(profile: list[LayerTime], path: Path, title: str, top: int = 25) -> Path | None:
    """Horizontal bars of average time per op (the benchmark binary's 'Run Order' table), slowest first."""
    rows = [r for r in profile if r.avg_ms is not None]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r.avg_ms, reverse=True)[:top]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    labels = [f"{r.type}  {r.name[:40]}" for r in rows]
    ax.barh(range(len(rows)), [r.avg_ms for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("average time per run (ms)")
    ax.set_title(title)
    return _save(fig, path)
