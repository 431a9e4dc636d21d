"""The shared core: atomic writes, the manifest schema, and the grouping console script."""

from __future__ import annotations

import copy
import errno
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bitat_edge import __version__, atomic, manifest
from bitat_edge.cli import STAGES, main
from bitat_edge.precision import W1A1


# -- atomic writes ------------------------------------------------------------------------------
def test_atomic_write_replaces_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_text(target, "second")
    assert target.read_text() == "second"
    assert os.listdir(target.parent) == ["out.json"]


def test_failure_mid_write_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "model.bin"
    atomic.write_bytes(target, b"old content")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_open(target, "wb") as handle:
            handle.write(b"half of the new")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_failure_on_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_open(target, "w") as handle:
            handle.write("partial")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_disk_full_is_reported_as_artifact_write_error(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    atomic.write_text(target, "keep")

    def no_space(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(atomic.ArtifactWriteError, match="no space left to write"):
        atomic.write_text(target, "new")
    assert target.read_text() == "keep"
    assert os.listdir(tmp_path) == ["r.json"]


def test_atomic_open_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="supports modes"):
        with atomic.atomic_open(tmp_path / "x", "a"):
            pass


# -- manifest -----------------------------------------------------------------------------------
def _good() -> dict:
    return manifest.Manifest(
        model_name="fmnist_float",
        input=manifest.InputSpec(shape=[1, 1, 28, 28], mean=[0.286], std=[0.353]),
        classes=[f"c{i}" for i in range(10)],
        arch="reactnet",
        layers=[manifest.LayerSpec(name="conv1", op="conv", precision="w1a1", in_channels=8, out_channels=8)],
        metrics={"test_top1": 0.9},
    ).to_dict()


def test_manifest_round_trip(tmp_path):
    path = tmp_path / "manifest.json"
    original = manifest.validate(_good())
    original.save(path)
    loaded = manifest.load(path)
    assert loaded == original
    assert loaded.num_classes == 10
    assert loaded.layers[0].precision == W1A1 and str(loaded.layers[0].precision) == "w1a1"


def _set(data: dict, dotted: str, value) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


_DELETE = object()

BAD_FIELDS = [
    ("schema_version", 1, "schema_version"),
    ("schema_version", _DELETE, "schema_version"),
    ("model_name", _DELETE, "model_name"),
    ("model_name", 3, "model_name"),
    ("extra_field", 1, "extra_field"),
    ("input", "1x28x28", "input"),
    ("input.shape", [1, 28, 28], "input.shape"),
    ("input.shape", [1, 1, 28, 0], "input.shape"),
    ("input.shape", _DELETE, "input.shape"),
    ("input.layout", "CHWN", "input.layout"),
    ("input.mean", [0.1, 0.2, 0.3], "input.mean"),
    ("input.std", [0], "input.std"),
    ("input.colour", "rgb", "input.colour"),
    ("classes", [], "classes"),
    ("classes", [1, 2], "classes[0]"),
    ("arch", 5, "arch"),
    ("deploy", [], "deploy"),
    ("deploy", {"input_shape": [1, 28, 28]}, "deploy.input_shape"),
    ("metrics.test_top1", "high", "metrics.test_top1"),
    ("metrics.test_top1", True, "metrics.test_top1"),
    ("layers", {}, "layers"),
    ("layers.0.precision", "w9a9", "layers[0].precision"),
    ("layers.0.precision", "fp16", "layers[0].precision"),
    ("layers.0.name", _DELETE, "layers[0].name"),
    ("layers.0.bits", 1, "layers[0].bits"),
]
BAD_FIELDS += [
    ("input.dtype", "int3", "input.dtype"),
    ("input.mean", [True], "input.mean[0]"),
    ("layers.0.op", "fft", "layers[0].op"),
    ("layers.0.name", 5, "layers[0].name"),
    ("layers.0.in_channels", "x", "layers[0].in_channels"),
    ("layers.0.kernel", "3", "layers[0].kernel"),
]


@pytest.mark.parametrize(("field", "value", "named"), BAD_FIELDS)
def test_manifest_rejects_bad_field_naming_it(tmp_path, field, value, named):
    data = copy.deepcopy(_good())
    _set(data, field, value)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(manifest.ManifestError) as info:
        manifest.load(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert f"'{named}'" in message


def test_manifest_missing_and_invalid_json(tmp_path):
    with pytest.raises(manifest.ManifestError, match="manifest not found"):
        manifest.load(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"model_name": ')
    with pytest.raises(manifest.ManifestError, match="not valid JSON"):
        manifest.load(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    with pytest.raises(manifest.ManifestError, match="must be a JSON object"):
        manifest.load(listed)


def test_manifest_save_validates_before_writing(tmp_path):
    bad = manifest.validate(_good())
    bad.classes = []
    path = tmp_path / "manifest.json"
    with pytest.raises(manifest.ManifestError, match="'classes'"):
        bad.save(path)
    assert not path.exists()


# -- the bitat-edge console script --------------------------------------------------------------
def test_top_level_help_lists_stages():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for stage in STAGES:
        assert stage in result.output


def test_top_level_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_top_level_reaches_train_stage():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0, result.output
    for command in ("run", "eval", "export", "summary"):
        assert command in result.output


def test_missing_stage_dependency_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(STAGES, "convert", ("bitat_edge_no_such_module", "cli", "missing"))
    result = CliRunner().invoke(main, ["convert", "--help"])
    assert result.exit_code == 1
    assert "pip install 'bitat-edge[convert]'" in result.output
    assert "Traceback" not in result.output


def test_unknown_stage_is_rejected():
    result = CliRunner().invoke(main, ["fly"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_help_works_when_a_stage_is_not_installed(monkeypatch):
    """A runtime-only install (a Raspberry Pi) has no torch: `bitat-edge --help` must still list the stages."""
    monkeypatch.setitem(STAGES, "train", ("bitat_edge_no_such_module", "cli", "Train models."))
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "bench" in result.output


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    """Artifacts are not left with mkstemp's private 0600 mode."""
    import os
    import stat

    from bitat_edge.atomic import write_text

    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("module", ["bitat_edge.cli", "train.cli", "convert.cli", "runtime.mcu.cli"])
def test_every_cli_module_runs_with_python_dash_m(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: python -m {module} ")
