"""Where bench sessions write: a results directory whose aggregated files a session did not write is refused
before anything is measured; two sessions in the same second get different directories."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from runtime.errors import BenchError
from runtime.results import CSV_COLUMNS, check_results_root, markdown_table, session_dir_for


def test_a_new_or_harness_written_root_is_accepted(tmp_path: Path):
    check_results_root(tmp_path / "new")
    (tmp_path / "results.csv").write_text(",".join(CSV_COLUMNS) + "\n")
    (tmp_path / "results.md").write_text(markdown_table([]))
    (tmp_path / "accuracy_vs_latency.png").write_bytes(b"\x89PNG")
    check_results_root(tmp_path)


@pytest.mark.parametrize("name,content", [("results.csv", "name,score\nalice,3\n"), ("results.md", "# My notes\n"),
                                          ("accuracy_vs_latency.png", "a plot of mine")])
def test_foreign_files_a_session_would_overwrite_are_refused(tmp_path: Path, name: str, content: str):
    (tmp_path / name).write_text(content)
    with pytest.raises(BenchError, match=rf"^{tmp_path / name}: was not written by a bench session"):
        check_results_root(tmp_path)
    assert (tmp_path / name).read_text() == content


def test_a_file_is_not_a_results_root(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(BenchError, match="is a file, not a directory"):
        check_results_root(tmp_path / "f")


def test_sessions_in_the_same_second_get_their_own_directories(tmp_path: Path):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first = session_dir_for(tmp_path, "host", now)
    first.mkdir()
    second = session_dir_for(tmp_path, "host", now)
    assert first.name == "host-20260102T030405Z" and second.name == "host-20260102T030405Z-2"
