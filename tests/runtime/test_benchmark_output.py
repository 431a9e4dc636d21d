"""Parser tests on constructed lce_benchmark_model outputs of every shape (see fixtures/README.md)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runtime.engines.benchmark_output import parse, per_layer

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str):
    return parse((FIXTURES / name).read_text())


def test_success_output_gives_warmup_and_timed_stats_and_summary_line():
    out = load("success_rpi4.txt")
    assert not out.failed and out.errors == []
    assert (out.warmup.count, out.warmup.first, out.warmup.avg, out.warmup.std) == (5, 48211, 45906.4, 1152)
    timed = out.inference
    assert (timed.count, timed.first, timed.curr, timed.min, timed.max, timed.avg, timed.std) == (
        50, 45120, 45050, 44900, 45700, 45123.4, 150)
    assert (out.init_us, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us) == (
        41807, 48211, 45906.4, 45123.4)
    assert out.model_size_mb == 4.17312 and out.init_ms == 41.807
    assert (out.memory_init_mb, out.memory_overall_mb, out.peak_memory_mb) == (6.27734, 9.11719, None)
    assert timed.as_window() == {"count": 50, "avg": 45123.4, "min": 44900, "max": 45700, "std": 150}


def test_scientific_notation_single_warmup_run_and_peak_memory():
    out = load("qemu_scientific.txt")
    assert out.warmup.count == 1 and out.warmup.curr == 2874113 and not out.warmup.all_same
    assert math.isnan(out.warmup.avg)
    assert out.warmup.as_window() == {"count": 1, "avg": 2874113, "min": 2874113, "max": 2874113, "std": 0.0}
    assert out.inference.avg == pytest.approx(2.78966e6)
    assert out.warmup_avg_us == pytest.approx(2.87411e6) and out.inference_avg_us == pytest.approx(2.78966e6)
    assert out.init_ms == 1837.52
    assert out.peak_memory_mb == 14.6367 and out.vmrss_mb == 15


def test_all_same_lines():
    out = load("all_same.txt")
    assert out.warmup.all_same and out.warmup.count == 2 and out.warmup.curr == 18
    assert out.inference.all_same and out.inference.as_window() == {
        "count": 4, "avg": 17, "min": 17, "max": 17, "std": 0.0}


def test_dry_run_count_zero():
    out = load("dry_run_count0.txt")
    assert [s.count for s in out.stats] == [0, 0]
    assert out.inference_avg_us == 0 and not out.failed


def test_failure_is_detected_with_its_error_lines():
    out = load("failure_unresolved_op.txt")
    assert out.failed and out.inference is None
    assert "Encountered unresolved custom op: LceBconv2d." in out.errors
    assert out.errors[-1] == "Benchmarking failed."


def test_profiling_tables_current_layout():
    out = load("profiling.txt")
    init = out.profiles["init"]
    assert [r["Name"] for r in init["run_order"]] == ["ModifyGraphWithDelegate/0", "AllocateTensors/0"]
    run = out.profiles["run"]
    order = run["run_order"]
    assert [r["node type"] for r in order] == [
        "Convolution (NHWC, F32) IGEMM", "LceQuantize", "LceBconv2d", "LceBconv2d", "LceDequantize", "MEAN",
        "Fully Connected (NC, F32) GEMM"]
    assert order[2]["avg ms"] == 6.311 and order[2]["Name"] == "[model/quant_conv2d/Conv2D]:2"
    assert order[-1]["cdf%"] == pytest.approx(100.0)
    assert [r["node type"] for r in run["top_by_time"]][:2] == ["LceBconv2d", "LceBconv2d"]
    by_type = {r["Node type"]: r for r in run["by_node_type"]}
    assert by_type["LceBconv2d"]["count"] == 2 and by_type["LceBconv2d"]["avg ms"] == pytest.approx(12.153)
    # the "Timings (microseconds): count=..." summary must not be taken for a timing line
    assert [s.count for s in out.stats] == [1, 50]
    layers = per_layer(out)
    assert len(layers) == 7 and layers[2].to_dict() == {
        "name": "[model/quant_conv2d/Conv2D]:2", "type": "LceBconv2d", "avg_ms": 6.311,
        "percent": pytest.approx(100 * 6.311 / 15.894, abs=1e-3), "subgraph": 0}


def test_profiling_tables_legacy_layout_with_start_column():
    out = load("profiling_legacy_start_column.txt")
    rows = out.profiles["run"]["run_order"]
    assert [r["node type"] for r in rows] == ["CONV_2D", "LceQuantize", "LceBconv2d", "FULLY_CONNECTED"]
    assert rows[2]["start"] == 2.28 and rows[2]["avg ms"] == 6.311 and rows[2]["%"] == 72.16
    assert out.inference.avg == 8801.35


def test_legacy_average_line_without_prefixes():
    out = load("legacy_average_line.txt")
    assert (out.warmup_avg_us, out.init_us, out.inference_avg_us) == (86184.3, 4452, 115062)
    assert out.inference.count == 50 and out.init_ms == 4.452


def test_stderr_then_stdout_order_and_garbage_are_tolerated():
    text = "ERROR: something odd\nrandom noise = 12\nINFO: count=3 first=1 curr=2 min=1 max=3 avg=2 std=1\n"
    out = parse(text)
    assert out.errors == ["something odd"] and not out.failed
    assert out.inference.count == 3 and out.warmup is None
    assert parse("").inference is None
