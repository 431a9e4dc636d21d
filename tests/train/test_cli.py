"""The train CLI through click's CliRunner: run / resume / reuse, eval, export, summary, and user errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bitat_edge.cli import main
from train.cli import cli

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke_synthetic.yaml")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in error_lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("run", "--config", SMOKE, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"starting run 'smoke_synthetic' in {out}" in result.output
    assert "done: test top-1" in result.output
    return out


def test_reuse_keeps_a_finished_run_with_the_same_config(finished):
    before = (finished / "checkpoints" / "last.pt").stat().st_mtime_ns
    result = invoke("run", "--config", SMOKE, "--out", str(finished), "--reuse", "--set", "run.progress=true")
    assert result.exit_code == 0, result.output
    assert f"reusing the finished run in {finished} (test top-1" in result.output
    assert (finished / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_reuse_finishes_an_export_that_was_cut_off(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    config = out / "config.yaml"  # a run configured to export, killed during the export (the manifest goes last)
    config.write_text(config.read_text().replace("export: false", "export: true"))
    assert not (out / "manifest.json").exists()
    before = (out / "checkpoints" / "last.pt").stat().st_mtime_ns
    result = invoke("run", "--config", SMOKE, "--out", str(out), "--reuse", "--set", "run.export=true")
    assert result.exit_code == 0, result.output
    assert "its export was not finished; exported" in result.output
    assert (out / "manifest.json").is_file() and (out / "model.onnx").is_file()
    assert (out / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_reuse_of_a_finished_run_with_another_config_is_an_error(finished):
    result = invoke("run", "--config", SMOKE, "--out", str(finished), "--reuse", "--set", "optim.lr=0.5")
    assert_user_error(result, str(finished), "different config (differs at: optim.lr)", "another --out")


def test_default_resume_with_another_config_is_an_error(finished):
    result = invoke("run", "--config", SMOKE, "--out", str(finished), "--set", "seed=3")
    assert_user_error(result, "different config (differs at: seed)", "--no-resume")


def test_reuse_resumes_an_unfinished_run(tmp_path):
    out = tmp_path / "run"
    first = invoke("run", "--config", SMOKE, "--out", str(out), "--set", "run.export=false")
    assert first.exit_code == 0, first.output
    (out / "summary.json").unlink()  # the state a run killed after its last checkpoint leaves
    again = invoke("run", "--config", SMOKE, "--out", str(out), "--reuse", "--set", "run.export=false")
    assert again.exit_code == 0, again.output
    assert "resuming run" in again.output
    assert "resuming" in again.output and "at step 14" in again.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 14


def test_no_resume_starts_over(tmp_path):
    out = tmp_path / "run"
    assert invoke("run", "--config", SMOKE, "--out", str(out), "--set", "run.max_steps=3").exit_code == 0
    result = invoke("run", "--config", SMOKE, "--out", str(out), "--no-resume")
    assert result.exit_code == 0, result.output
    assert "starting run" in result.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 14


def test_flag_conflicts_and_missing_checkpoint(tmp_path):
    assert_user_error(
        invoke("run", "--config", SMOKE, "--out", str(tmp_path), "--resume"), "last.pt does not exist"
    )
    assert_user_error(
        invoke("run", "--config", SMOKE, "--out", str(tmp_path), "--reuse", "--no-resume"), "pass only one"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
        (["--set", "optim.lr=fast"], "config key 'optim.lr' must be a number"),
        (["--set", "nonsense"], "must look like section.key=value"),
        (
            [
                "--set",
                "data.name=fashion_mnist",
                "--set",
                "data.image_size=null",
                "--data-dir",
                "/nonexistent/fmnist",
            ],
            "/nonexistent/fmnist",
        ),
        (["--set", "model.init_from=/nonexistent/best.pt"], "/nonexistent/best.pt not found"),
        (["--set", "data.batch_size=100000"], "data.batch_size 100000 exceeds"),
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, args, fragment):
    assert_user_error(invoke("run", "--config", SMOKE, "--out", str(tmp_path / "r"), *args), fragment)


def test_missing_config_file(tmp_path):
    assert_user_error(invoke("run", "--config", str(tmp_path / "none.yaml")), "none.yaml not found")


def test_eval_matches_the_summary(finished):
    result = invoke("eval", str(finished), "--device", "cpu")
    assert result.exit_code == 0, result.output
    top1 = json.loads((finished / "summary.json").read_text())["test_top1"]
    assert f"test top-1 {100 * top1:.2f}%" in result.output
    assert "on 128 images" in result.output


def test_eval_of_a_missing_run(tmp_path):
    assert_user_error(invoke("eval", str(tmp_path / "none")), "best.pt not found")


def test_export_writes_onnx_and_manifest(finished):
    result = invoke("export", str(finished))
    assert result.exit_code == 0, result.output
    assert (finished / "model.onnx").is_file() and (finished / "manifest.json").is_file()


def test_export_of_a_missing_run(tmp_path):
    assert_user_error(invoke("export", str(tmp_path)), "best.pt not found")


def test_summary_prints_the_model():
    result = invoke("summary", "--config", SMOKE)
    assert result.exit_code == 0, result.output
    assert "param" in result.output.lower()


def test_summary_with_a_bad_override():
    assert_user_error(invoke("summary", "--config", SMOKE, "--set", "model.arch=vgg"), "'model.arch'")


def test_reached_through_the_bitat_edge_group(finished):
    result = CliRunner().invoke(main, ["train", "run", "--config", SMOKE, "--out", str(finished), "--reuse"])
    assert result.exit_code == 0, result.output
    assert "reusing the finished run" in result.output


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "train.cli", "run", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--reuse" in result.stdout and "--set" in result.stdout


def test_run_with_export_leaves_the_convert_inputs(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--config", SMOKE, "--out", str(out), "--set", "run.export=true", "--set", "run.max_steps=3")
    assert result.exit_code == 0, result.output
    assert (out / "model.onnx").is_file()
    from bitat_edge import manifest

    loaded = manifest.load(out / "manifest.json")
    assert loaded.num_classes == 10 and loaded.input.shape[1:] == [1, 16, 16]
    # Starting over removes the previous run's results, exported files included.
    again = invoke("run", "--config", SMOKE, "--out", str(out), "--no-resume", "--set", "run.max_steps=3")
    assert again.exit_code == 0, again.output
    assert not (out / "model.onnx").exists() and not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("method.importanse=false", "unknown config key 'method.importanse'; valid keys in 'method' for method 'bitat'"),
        ("method.activation=aprox_sign", "config key 'method.activation' must name a quantizer for activations "
                                         "(unknown quantizer 'aprox_sign'"),
        ("method.weight=approx_sign", "'approx_sign' binarizes activations, not weights"),
    ],
)
def test_method_option_mistakes_fail_before_any_dataset_is_opened(tmp_path, monkeypatch, override, fragment):
    from train import data, engine

    def opened(*_args, **_kwargs):
        raise AssertionError("a dataset was opened before the config was validated")

    monkeypatch.setattr(data, "build_datasets", opened)
    monkeypatch.setattr(engine, "build_datasets", opened)
    out = tmp_path / "run"
    # Fashion-MNIST in a folder that does not exist: reading data would fail with another message.
    args = ["run", "--config", SMOKE, "--out", str(out), "--data-dir", str(tmp_path / "no-such-folder"),
            "--set", "data.name=fashion_mnist", "--set", "data.image_size=null", "--set", "method.name=bitat"]
    assert_user_error(invoke(*args, "--set", override), fragment)
    assert not out.exists()
    # Without the mistake the same command does reach the dataset builder: the guard above is live.
    with pytest.raises(AssertionError, match="a dataset was opened"):
        invoke(*args)


def _run_with_checkpoint(finished: Path, folder: Path, edit) -> Path:
    """A copy of the finished run's best.pt, changed by ``edit(state)``, in ``folder/checkpoints``."""
    import torch

    state = torch.load(finished / "checkpoints" / "best.pt", weights_only=True)
    edit(state)
    (folder / "checkpoints").mkdir(parents=True)
    torch.save(state, folder / "checkpoints" / "best.pt")
    return folder


def test_checkpoint_mistakes_are_one_line_errors(finished, tmp_path):
    corrupt = tmp_path / "corrupt"
    (corrupt / "checkpoints").mkdir(parents=True)
    (corrupt / "checkpoints" / "best.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    for command in ("eval", "export"):
        assert_user_error(invoke(command, str(corrupt)), "best.pt is corrupt or not a bitat-edge checkpoint")
    future = _run_with_checkpoint(finished, tmp_path / "future", lambda state: state["config"].update(version=2))
    assert_user_error(invoke("eval", str(future), "--device", "cpu"),
                      "best.pt (stored config): config key 'version' must be 1")
    bad_info = _run_with_checkpoint(finished, tmp_path / "info",
                                    lambda state: state["data_info"].update(in_channels="one"))
    assert_user_error(invoke("export", str(bad_info)), "best.pt (data_info): field 'in_channels'")
    assert not (bad_info / "model.onnx").exists()


def test_run_record_mistakes_are_one_line_errors(finished, tmp_path):
    run = _run_with_checkpoint(finished, tmp_path / "run", lambda state: None)
    (run / "summary.json").write_text('{"test_top1": 0.5,')
    assert_user_error(invoke("export", str(run)), "summary.json: not valid JSON")
    assert not (run / "model.onnx").exists() and not (run / "manifest.json").exists()
