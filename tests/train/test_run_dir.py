"""``bitat-edge train run --out``: a directory that is not a run, the working directory, or a run holding the
checkpoint a fresh start reads is refused in one line before anything is written or deleted."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from train.cli import cli

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke_synthetic.yaml")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", ["not a run", "working directory", "starts from a checkpoint inside"])
def test_out_that_training_would_damage_is_refused(tmp_path, monkeypatch, case):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "model.onnx").write_bytes(b"someone's model, which a fresh start would delete")
    (out / "checkpoints" / "best.pt").write_bytes(b"a teacher")
    args = ["run", "--config", SMOKE, "--no-resume"]
    expected = "exists and is not a run directory (no config.yaml and env.json"
    if case == "working directory":
        monkeypatch.chdir(out)
        args += ["--out", "."]
        expected = ".: is the current directory"
    else:
        args += ["--out", str(out)]
    if case == "starts from a checkpoint inside":
        (out / "config.yaml").write_text("name: earlier\n")
        (out / "env.json").write_text("{}\n")
        args += ["--set", f"distill.teacher={out / 'checkpoints' / 'best.pt'}"]
        expected = f"{out}: holds the input {out / 'checkpoints' / 'best.pt'}"
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 2 and expected in result.output, result.output  # "starting run ..." + Error
    assert snapshot(tmp_path) == before
