"""benchmarks/make_train.py: it never reuses or replaces existing runs, and its table states the goal."""

from __future__ import annotations

import pytest

from benchmarks.make_train import GOAL_SECONDS, parse_args, to_markdown


def test_an_existing_out_is_refused_not_replaced(tmp_path, capsys):
    (tmp_path / "float").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "would reuse its runs" in capsys.readouterr().err
    assert (tmp_path / "float").is_dir()


@pytest.mark.parametrize("wall, verdict", [(922.0, "| goal <= 20 min | met |"), (1300.0, "| goal <= 20 min | not met |")])
def test_table_shows_the_wall_time_each_run_and_the_verdict(wall, verdict):
    run = {"run_dir": "runs/x", "test_top1_percent": 92.23, "test_images": 10000, "epochs": 4, "wall_seconds": 484.2,
           "images_per_s": 473.7}
    record = {"wall_seconds": wall, "peak_rss_mib": 1459.0, "load_average_start": [0.7, 0.5, 0.2],
              "load_average_end": [2.0, 1.9, 1.5], "runs": {"float": run, "bitat": run},
              "goal": {"wall_seconds": GOAL_SECONDS, "met": wall <= GOAL_SECONDS},
              "machine": {"cpu_count": 2, "cpu_model": "cpu", "platform": "linux", "torch": "2.13.0", "date": "d"}}
    table = to_markdown(record)
    assert f"| wall time (whole command) | {wall:.0f} s" in table and verdict in table
    assert "| float run: test top-1 / its own wall time | 92.23 % / 484 s" in table
