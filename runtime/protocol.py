"""The measurement protocol: warm-up, then K windows of N timed runs; median and spread per window and overall.

Window-to-window spread shows drift (thermal throttling, a busy governor) that pooled statistics hide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bitat_edge.bench_record import Latency, Stats


@dataclass
class Protocol:
    """How many runs: ``warmup`` untimed, then ``windows`` windows of ``runs`` timed runs each."""

    warmup: int = 5
    runs: int = 50
    windows: int = 3
    threads: int = 1

    def check(self) -> None:
        from runtime.errors import BenchError

        if self.warmup < 0 or self.runs < 1 or self.windows < 1 or self.threads < 1:
            raise BenchError(
                f"protocol: need --warmup >= 0, --runs >= 1, --windows >= 1, --threads >= 1 "
                f"(got {self.warmup}, {self.runs}, {self.windows}, {self.threads})"
            )


def summarize(samples_ms: list[float] | np.ndarray) -> Stats:
    """Median, quartiles, IQR, min, max, mean and (population) std of latencies in ms."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    return Stats(n=int(values.size), median=median, q1=q1, q3=q3, iqr=q3 - q1, min=float(values.min()),
                 max=float(values.max()), mean=float(values.mean()), std=float(values.std()))


def summarize_windows(windows_us: list[list[float]]) -> Latency:
    """Per-window and overall statistics (ms) from per-run timings in µs, one list per window."""
    if not windows_us or any(len(w) == 0 for w in windows_us):
        raise ValueError("every window needs at least one timing")
    per_window = [summarize(np.asarray(w) / 1000.0) for w in windows_us]
    overall = summarize(np.concatenate([np.asarray(w, dtype=np.float64) for w in windows_us]) / 1000.0)
    medians = [w.median for w in per_window]
    return Latency(source="per-run timings", windows=per_window, overall=overall, typical_ms=overall.median,
                   typical_is="median", window_spread_ms=max(medians) - min(medians))


def summarize_window_aggregates(windows: list[dict[str, float]]) -> Latency:
    """Statistics (ms) when each window only reports aggregates (the benchmark binary: count/avg/min/max/std in µs).

    No run-level median exists, so the typical value is the median of the window means (``typical_is``
    says so); min/max span all windows; std pools the windows' variances around the grand mean.
    """
    if not windows:
        raise ValueError("no windows")
    per_window = [Stats(n=int(w["count"]), mean=w["avg"] / 1000.0, min=w["min"] / 1000.0, max=w["max"] / 1000.0,
                        std=w["std"] / 1000.0) for w in windows]
    counts = np.array([w.n for w in per_window], dtype=np.float64)
    means = np.array([w.mean for w in per_window])
    stds = np.array([w.std for w in per_window])
    grand = float((counts * means).sum() / counts.sum())
    pooled = math.sqrt(float((counts * (stds**2 + (means - grand) ** 2)).sum() / counts.sum()))
    overall = Stats(n=int(counts.sum()), mean=grand, min=min(w.min for w in per_window),
                    max=max(w.max for w in per_window), std=pooled)
    return Latency(source="window aggregates", windows=per_window, overall=overall,
                   typical_ms=float(np.median(means)), typical_is="median of window means",
                   window_spread_ms=float(means.max() - means.min()))
