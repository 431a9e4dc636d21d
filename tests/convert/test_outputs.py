"""Where ``bitat-edge convert`` writes: never over what is not a bundle, and TensorFlow is not even imported
when the inputs or the output directory are wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx_nets import OnnxNet

from bitat_edge.cli import main
from bitat_edge.manifest import InputSpec, Manifest

REPO = Path(__file__).resolve().parents[2]


def _inputs(folder: Path) -> tuple[Path, Path]:
    """A small float model and its manifest in ``folder`` (with a user's file beside them)."""
    folder.mkdir(parents=True, exist_ok=True)
    net = OnnxNet((1, 2, 4, 4))
    y = net.op("Flatten", [net.op("Relu", [net.conv(net.input, net.rng.normal(size=(3, 2, 1, 1)).astype(np.float32))])])
    model = net.save(folder / "model.onnx", y, output_shape=[1, 48])
    manifest = Manifest(model_name="m", input=InputSpec(shape=[1, 2, 4, 4]),
                        classes=[f"c{i}" for i in range(48)]).save(folder / "manifest.json")
    (folder / "notes.txt").write_text("the user's notes")
    return model, manifest


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", ["non-bundle directory", "the model's own folder", "the working directory",
                                  "a file", "bundle holding a user file"])
def test_out_that_is_not_a_bundle_leaves_every_file_untouched(tmp_path, monkeypatch, case):
    model, manifest = _inputs(tmp_path / "models")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("do not delete")
    (tmp_path / "b").mkdir()
    for name in ("manifest.json", "model.tflite", "precious.csv"):
        (tmp_path / "b" / name).write_text("x")
    out = {"non-bundle directory": tmp_path / "mine", "the model's own folder": tmp_path / "models",
           "the working directory": Path("."), "a file": tmp_path / "mine" / "thesis.tex",
           "bundle holding a user file": tmp_path / "b"}[case]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / ("mine" if case == "the working directory" else "elsewhere"))
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, ["convert", "onnx", str(model), "--manifest", str(manifest), "--out", str(out)])
    error = result.output.strip().splitlines()[-1]  # click's usage errors (exit 2) print a usage line first
    assert result.exit_code in (1, 2) and error.startswith("Error: ") and str(out) in error, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, OSError)
    assert snapshot(tmp_path) == before


def test_convert_run_refuses_a_deploy_directory_that_is_not_a_bundle(tmp_path):
    run = tmp_path / "run"
    model, manifest = _inputs(run)
    model.rename(run / "model.onnx")
    for name in ("eval.npz", "calib.npz"):
        np.savez(run / name, x=np.zeros((2, 2, 4, 4), np.float32))
    (run / "deploy").mkdir()
    (run / "deploy" / "data.bin").write_bytes(b"user data")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, ["convert", "run", str(run)])
    assert result.exit_code == 1 and f"{run / 'deploy'}: exists and is not a deploy bundle" in result.output
    assert snapshot(tmp_path) == before


def _cli_in_subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom bitat_edge.cli import main\ntry:\n    main(sys.argv[1:], standalone_mode=True)\n"
            "finally:\n    print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow', file=sys.stderr)")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd)})


@pytest.mark.parametrize("mistake", ["missing manifest", "out is not a bundle"])
def test_user_mistakes_fail_before_tensorflow_is_imported(tmp_path, mistake):
    model, manifest = _inputs(tmp_path / "in")
    out = tmp_path / "bundle"
    if mistake == "missing manifest":
        manifest = tmp_path / "nowhere.json"
    else:
        out = tmp_path / "in"
    done = _cli_in_subprocess(["convert", "onnx", str(model), "--manifest", str(manifest), "--out", str(out)],
                              tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [done.stderr.splitlines()[0], "no tensorflow"], done.stderr
    assert done.stderr.startswith("Error: ") and done.stdout == ""


def test_native_chatter_is_kept_off_the_terminal_and_errors_keep_its_reason(capfd):
    from convert.errors import ConvertError
    from convert.quiet import quiet

    with quiet():
        os.write(2, b"W0000 00:00 tf_tfl_flatbuffer_helpers.cc:390] Ignored output_format.\n")
    with pytest.raises(ConvertError, match=r"engine failed; it printed: ERROR: Grouped binary convolutions are not"):
        with quiet():
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
            os.write(2, b"ERROR: Grouped binary convolutions are not supported with this kernel.\n")
            raise ConvertError("engine failed")
    assert capfd.readouterr().err == ""
