"""Fill the README's result sections from the generated tables in ``results/``.

The README marks each section with ``<!-- results:NAME -->`` ... ``<!-- /results:NAME -->``; the
text between the markers is replaced by ``results/NAME.md`` (written by the benchmark scripts).
A section whose file does not exist says so instead of showing stale numbers.
Usage: ``python benchmarks/update_readme.py [--check]`` (``--check`` exits 1 if README is out of date).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bitat_edge.atomic import write_text

ROOT = Path(__file__).resolve().parent.parent
SECTION = re.compile(r"(<!-- results:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def render(readme: str, results_dir: Path) -> str:
    """Return ``readme`` with every marked section replaced by its results file."""

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        table = results_dir / f"{name}.md"
        if table.is_file():
            body = table.read_text(encoding="utf-8").rstrip("\n") + "\n"
        else:
            body = f"_No result file yet: run the benchmark that writes `results/{name}.md`._\n"
        return f"{match[1]}{body}{match[4]}"

    return SECTION.sub(fill, readme)


def main(argv: list[str]) -> int:
    readme_path = ROOT / "README.md"
    current = readme_path.read_text(encoding="utf-8")
    updated = render(current, ROOT / "results")
    if "--check" in argv:
        if updated != current:
            print("README.md result sections are out of date: run python benchmarks/update_readme.py")
            return 1
        return 0
    if updated != current:
        write_text(readme_path, updated)
        print("README.md updated from results/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
