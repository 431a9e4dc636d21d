"""The fuzz tests' private working directory, and their summary in the test log (tests/fuzzing.py): inputs
per target, refused or read, tracebacks, stray files."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzing import COUNTS


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path``, with the working directory an empty folder inside it: anything a reader writes to a
    relative path lands under ``tmp_path``, where ``fuzzing.stray_files`` finds it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


def pytest_terminal_summary(terminalreporter) -> None:
    if not COUNTS:
        return
    terminalreporter.section("fuzz: damaged inputs per reader")
    for name, counts in sorted(COUNTS.items()):
        total = counts["read"] + counts["refused"]
        terminalreporter.write_line(f"{name}: {total} inputs ({counts['refused']} refused in one line, "
                                    f"{counts['read']} read), {counts['tracebacks']} tracebacks, "
                                    f"{counts['stray files']} files written")
