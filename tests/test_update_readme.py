"""The README's result sections are generated from results/*.md and kept in sync."""

from __future__ import annotations

from pathlib import Path

from benchmarks.update_readme import ROOT, main, render


def test_sections_are_replaced_from_files(tmp_path: Path) -> None:
    (tmp_path / "speed.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    readme = "intro\n<!-- results:speed -->\nold numbers\n<!-- /results:speed -->\n<!-- results:gone -->\nx\n<!-- /results:gone -->\n"
    out = render(readme, tmp_path)
    assert "| 1 | 2 |" in out and "old numbers" not in out
    assert "No result file yet" in out and "results/gone.md" in out
    assert render(out, tmp_path) == out


def test_readme_matches_result_files() -> None:
    assert (ROOT / "README.md").is_file()
    assert main(["--check"]) == 0, "run: python benchmarks/update_readme.py"
