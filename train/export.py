"""Export a trained model to ONNX in the form LCE recognises, plus everything ``convert/`` needs.

The quantized layers' eval-mode forward already is the exported form (``x - tau`` ->
``where(x >= 0, 1, -1)`` -> ``F.pad(value=1)`` -> conv with +/-alpha weights -> BN), so the
TorchScript exporter writes ``Sub``, ``GreaterOrEqual``+``Where``, ``Pad`` (constant 1) and ``Conv``
with constant weights; ``convert/`` pattern-matches those. A run export also writes the manifest
(``bitat_edge.manifest``, schema v2) and the preprocessed eval/calibration sets so that
``convert/`` and ``runtime/`` never need torch. File names are ``bitat_edge.layout.RunDir``'s.
"""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bitat_edge import __version__, manifest
from bitat_edge.atomic import atomic_open, write_bytes
from bitat_edge.layout import RunDir
from train.errors import ExportError
from train.rundir import read_summary

EXPORT_OPSET = 17
CALIB_IMAGES = 256
PARITY_INPUTS = 4
# ONNX Runtime vs PyTorch on random inputs: float32 kernels sum in different orders. 1e-4 of the
# output scale (plus 1e-5 absolute) is ~100x the error seen on float and binary test nets.
ORT_RTOL = 1e-4
ORT_ATOL = 1e-5
# A graph with integer grids (QuantizeLinear): a value within float rounding of a half step rounds one
# whole step apart in the two runtimes; one such flip moved a UniQ W4A4 net's logits by 2.2 % of their
# scale. A wrong scale, zero point or op moves them by their whole scale; the conversion's parity gate
# then checks the decisions on every eval image.
ORT_GRID_RTOL = 0.1


def _as_nchw(input_shape: tuple[int, ...] | list[int]) -> tuple[int, int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise ExportError(f"input shape must be [1, C, H, W] or [C, H, W] (LCE runs batch 1), got {list(input_shape)}")
    return shape  # type: ignore[return-value]


def check_against_onnxruntime(model: nn.Module, proto: onnx.ModelProto, shape: tuple[int, ...],
                              inputs: int = PARITY_INPUTS, seed: int = 0) -> float:
    """Run ``inputs`` random images through PyTorch and ONNX Runtime; return the max abs logit difference
    (at most ``ORT_RTOL`` of the output scale, ``ORT_GRID_RTOL`` for a graph with integer grids)."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rtol = ORT_GRID_RTOL if any(node.op_type == "QuantizeLinear" for node in proto.graph.node) else ORT_RTOL
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for _ in range(inputs):
            x = torch.randn(shape, generator=generator)
            ref = model(x).numpy()
            got = session.run(None, {name: x.numpy()})[0]
            diff = float(np.abs(ref - got).max())
            if diff > ORT_ATOL + rtol * float(np.abs(ref).max()):
                raise ExportError(f"ONNX Runtime output differs from PyTorch by {diff:.3g} "
                                  f"(output scale {float(np.abs(ref).max()):.3g}); the export is not faithful")
            worst = max(worst, diff)
    return worst


def export_onnx(model: nn.Module, input_shape: tuple[int, ...] | list[int], path: str | os.PathLike[str],
                opset: int = EXPORT_OPSET) -> Path:
    """Export ``model`` (eval mode, batch 1, constants folded) to ``path``; full ONNX check and an
    ONNX Runtime comparison with PyTorch; written atomically."""
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; use opset >= 17")
    shape = _as_nchw(input_shape)
    model = model.eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(shape),), buffer, dynamo=False, do_constant_folding=True,
                          opset_version=opset, input_names=["input"], output_names=["logits"])
    proto = onnx.load_from_string(buffer.getvalue())
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
    check_against_onnxruntime(model, proto, shape)
    return write_bytes(path, proto.SerializeToString())


def _stack(dataset: Dataset, limit: int | None, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, seen = [], [], 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
        seen += len(x)
        if limit is not None and seen >= limit:
            break
    x, y = torch.cat(xs), torch.cat(ys)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _metrics(run: RunDir) -> dict[str, float]:
    if not run.summary.is_file():
        return {}
    summary = read_summary(run)
    return {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def export_run(run_dir: str | os.PathLike[str]) -> Path:
    """From the run's ``checkpoints/best.pt`` write ``model.onnx``, ``manifest.json``, ``eval.npz``
    (test split: ``x`` float32 NCHW, ``y`` int64, ``torch_logits`` float32) and ``calib.npz``
    (un-augmented training images); return the ONNX path. The manifest is validated before any
    file is written and written last."""
    from train.assembly import build_from_checkpoint
    from train.data import build_datasets
    from train.quant.specs import layer_specs

    run = RunDir(Path(run_dir))
    if not run.best.is_file():
        raise ExportError(f"{run.best} not found; train the run first")
    model, cfg = build_from_checkpoint(run.best)
    splits = build_datasets(cfg.data, cfg.seed)
    info = splits.info
    shape = (1, *info.input_shape)
    record = manifest.validate({
        "model_name": cfg.name,
        "schema_version": manifest.SCHEMA_VERSION,
        "input": {"shape": list(shape), "layout": "NCHW", "mean": info.mean, "std": info.std},
        "classes": info.classes,
        "arch": cfg.model.arch,
        "method": cfg.method.name,
        "dataset": info.name,
        "layers": [spec.to_dict() for spec in layer_specs(model)],
        "metrics": _metrics(run),
        "producer": f"bitat-edge {__version__} train.export",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, str(run.manifest))
    # The manifest goes last and the previous one first: a kill mid-export leaves no manifest, so the convert
    # stage refuses the run ("not an exported run") instead of pairing a new model with old eval data.
    run.manifest.unlink(missing_ok=True)
    onnx_path = export_onnx(model, shape, run.onnx)

    batch = cfg.data.eval_batch_size
    x_test, y_test = _stack(splits.test, cfg.data.eval_limit, batch)
    _save_npz(run.eval, x=x_test.numpy().astype(np.float32), y=y_test.numpy().astype(np.int64),
              torch_logits=_logits(model, x_test, batch).astype(np.float32))
    x_calib, _ = _stack(splits.calibration, CALIB_IMAGES, batch)
    _save_npz(run.calib, x=x_calib.numpy().astype(np.float32))
    record.save(run.manifest)
    return onnx_path
