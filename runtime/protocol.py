"""The measurement protocol: warm-up, then K windows of N timed runs; median and spread per window and overall.

Window-to-window spread shows drift (thermal throttling, a busy governor) that pooled statistics hide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def summarize(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    """Median, quartiles, IQR, min, max, mean and (population) std of latencies in ms."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {
        "n": int(values.size),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
    }


def summarize_windows(windows_us: list[list[float]]) -> dict[str, Any]:
    """Per-window and overall statistics (ms) from per-run timings in µs, one list per window."""
    if not windows_us or any(len(w) == 0 for w in windows_us):
        raise ValueError("every window needs at least one timing")
    per_window = [summarize(np.asarray(w) / 1000.0) for w in windows_us]
    overall = summarize(np.concatenate([np.asarray(w, dtype=np.float64) for w in windows_us]) / 1000.0)
    medians = [w["median"] for w in per_window]
    overall["window_median_spread"] = float(max(medians) - min(medians))
    return {"source": "per-run timings", "windows": per_window, "overall": overall}


def summarize_window_aggregates(windows: list[dict[str, float]]) -> dict[str, Any]:
    """Statistics (ms) when each window only reports aggregates (the benchmark binary: count/avg/min/max/std in µs).

    The overall 'median' is the median of the window averages; min/max span all windows; std pools
    the windows' variances around the grand mean.
    """
    if not windows:
        raise ValueError("no windows")
    per_window = []
    for w in windows:
        per_window.append({
            "n": int(w["count"]), "mean": w["avg"] / 1000.0, "min": w["min"] / 1000.0,
            "max": w["max"] / 1000.0, "std": w["std"] / 1000.0,
        })
    counts = np.array([w["n"] for w in per_window], dtype=np.float64)
    means = np.array([w["mean"] for w in per_window])
    stds = np.array([w["std"] for w in per_window])
    grand = float((counts * means).sum() / counts.sum())
    pooled = math.sqrt(float((counts * (stds**2 + (means - grand) ** 2)).sum() / counts.sum()))
    overall = {
        "n": int(counts.sum()),
        "median": float(np.median(means)),
        "mean": grand,
        "min": float(min(w["min"] for w in per_window)),
        "max": float(max(w["max"] for w in per_window)),
        "std": pooled,
        "window_median_spread": float(means.max() - means.min()),
    }
    return {"source": "window aggregates (median of window averages)", "windows": per_window, "overall": overall}
