"""Statistics of the measurement protocol."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import BenchError
from runtime.protocol import Protocol, summarize, summarize_window_aggregates, summarize_windows


def test_summarize_matches_numpy_definitions():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0]
    s = summarize(values)
    assert s.n == 6 and s.median == 3.5 and s.min == 1.0 and s.max == 100.0
    assert s.q1 == pytest.approx(np.percentile(values, 25)) and s.q3 == pytest.approx(np.percentile(values, 75))
    assert s.iqr == pytest.approx(s.q3 - s.q1)
    assert s.std == pytest.approx(np.std(values)) and s.mean == pytest.approx(np.mean(values))
    with pytest.raises(ValueError):
        summarize([])


def test_windows_converts_us_to_ms_and_reports_drift():
    windows = [[1000.0, 1100.0, 900.0], [2000.0, 2100.0, 1900.0]]
    out = summarize_windows(windows)
    assert [w.median for w in out.windows] == [1.0, 2.0]
    assert out.overall.n == 6 and out.overall.median == pytest.approx(1.5)
    assert out.typical_ms == out.overall.median and out.typical_is == "median"
    assert out.window_spread_ms == pytest.approx(1.0)
    with pytest.raises(ValueError):
        summarize_windows([[1.0], []])


def test_window_aggregates_pool_variance_around_the_grand_mean():
    windows = [{"count": 10, "avg": 1000.0, "min": 900.0, "max": 1100.0, "std": 0.0},
               {"count": 10, "avg": 3000.0, "min": 2900.0, "max": 3100.0, "std": 0.0},
               {"count": 20, "avg": 2000.0, "min": 1500.0, "max": 2500.0, "std": 0.0}]
    latency = summarize_window_aggregates(windows)
    out = latency.overall
    # the median of window means is not a median of runs: it never sits under a "median" key
    assert latency.typical_is == "median of window means" and out.median is None and out.iqr is None
    assert out.n == 40 and latency.typical_ms == pytest.approx(2.0) and out.mean == pytest.approx(2.0)
    assert out.min == pytest.approx(0.9) and out.max == pytest.approx(3.1)
    samples = np.repeat([1.0, 3.0, 2.0], [10, 10, 20])  # same data as individual runs
    assert out.std == pytest.approx(samples.std())
    assert latency.window_spread_ms == pytest.approx(2.0)


def test_protocol_rejects_nonsense():
    Protocol(warmup=0, runs=1, windows=1, threads=1).check()
    with pytest.raises(BenchError, match="--runs >= 1"):
        Protocol(runs=0).check()
