"""The conversion report: parity between engines, op coverage, sizes, precision and cost; JSON and Markdown."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bitat_edge.manifest import INTEGER_FORMS, IntegerForm
from bitat_edge.precision import FLOAT, W1A1

if TYPE_CHECKING:
    from convert.keras_builder import LayerRecord

# How many disagreeing images are listed per engine (the count is always exact).
MAX_LISTED_DISAGREEMENTS = 200
# Per-image max |logit diff| above which an image counts as "off": float32 reordering alone stays
# near 1e-6; a binary net goes past this only when a pre-sign value within rounding of 0 flips.
OFF_THRESHOLD = 1e-4


def _margin(logits: np.ndarray) -> float:
    top2 = np.sort(logits)[-2:]
    return float(top2[1] - top2[0])


def parity(outputs: dict[str, np.ndarray], reference: str, labels: np.ndarray | None) -> dict[str, Any]:
    """Top-1 agreement of every engine with ``reference``, max |logit diff|, accuracy, and the disagreements."""
    ref = outputs[reference]
    ref_pred = ref.argmax(axis=1)
    engines: dict[str, Any] = {}
    for name, logits in outputs.items():
        pred = logits.argmax(axis=1)
        differ = np.flatnonzero(pred != ref_pred)
        per_image = np.abs(logits - ref).max(axis=1)
        entry: dict[str, Any] = {
            "nonfinite_images": int(np.sum(~np.isfinite(logits).all(axis=1))),
            "images": len(pred),
            "agree": int(len(pred) - len(differ)),
            "agreement": float(1.0 - len(differ) / len(pred)),
            "max_abs_logit_diff": float(per_image.max()),
            "median_max_abs_logit_diff": float(np.median(per_image)),
            "images_off": int(np.sum(per_image > OFF_THRESHOLD)),
            "disagreements": int(len(differ)),
            "listed": [
                {"index": int(i), f"{reference}_pred": int(ref_pred[i]), "pred": int(pred[i]),
                 f"{reference}_margin": _margin(ref[i]), "margin": _margin(logits[i]),
                 f"{reference}_logits": [round(float(v), 6) for v in ref[i]],
                 "logits": [round(float(v), 6) for v in logits[i]]}
                for i in differ[:MAX_LISTED_DISAGREEMENTS]
            ],
        }
        if labels is not None:
            entry["top1"] = float(np.mean(pred == labels))
        engines[name] = entry
    return {"reference": reference, "images": int(len(ref)), "labelled": labels is not None, "engines": engines}


def layer_summary(layers: list[LayerRecord]) -> dict[str, Any]:
    """Parameters by precision, MACs and binary operations, and which binary-intent layers stay float."""
    params: dict[str, int] = {}
    for r in layers:
        params[str(r.precision)] = params.get(str(r.precision), 0) + r.params
        if r.bias_params:
            params[str(FLOAT)] = params.get(str(FLOAT), 0) + r.bias_params
    weight_bytes = sum(r.precision.weight_bytes(r.params) + FLOAT.weight_bytes(r.bias_params) for r in layers)
    return {
        "params": params,
        "weight_bytes_ideal": int(weight_bytes),
        "macs": int(sum(r.macs for r in layers)),
        "bops": int(sum(r.bops for r in layers)),
        "binary_intent": sum(r.binary_intent for r in layers),
        "binary": sum(r.precision == W1A1 for r in layers),
        "float_binary_intent": [{"name": r.name, "op": r.op, "reason": r.reason}
                                for r in layers if r.binary_intent and r.precision != W1A1],
        "layers": [{**vars(r), "precision": str(r.precision)} for r in layers],
    }


def versions() -> dict[str, str]:
    """Versions of the packages a conversion depends on."""
    names = {"larq_compute_engine": "larq-compute-engine", "tensorflow": "tensorflow", "larq": "larq",
             "onnx": "onnx", "onnxruntime": "onnxruntime"}
    return {k: importlib.metadata.version(v) for k, v in names.items()}


def assemble(*, model_name: str, source: Path, target: str, input_nchw: tuple[int, ...], onnx_ops: dict[str, int],
             models: dict[str, bytes], layers: list[LayerRecord], parity: dict[str, Any], gate: dict[str, Any],
             calibration_images: int, timing_s: dict[str, float], int8_form: IntegerForm) -> dict[str, Any]:
    """The ``report.json`` content. ``models`` maps each engine name (``lce``, ``tflite_fp32``,
    ``tflite_int8``) to its flatbuffer; ``parity`` is ``parity(...)``'s result and ``gate`` the parity gate's
    verdict on it (``convert.gate.ParityGate.verdict``); ``int8_form`` is the integer form of the
    ``tflite_int8`` model (``bitat_edge.manifest.INTEGER_FORMS``)."""
    from convert.lce import BCONV, op_histogram

    ops = {"onnx": onnx_ops} | {engine: op_histogram(fb) for engine, fb in models.items()}
    summary = layer_summary(layers)
    bconv = ops["lce"].get(BCONV, 0)
    problems = ([] if bconv == summary["binary"] else
                [f"the builder lowered {summary['binary']} layers as binary but LCE emitted {bconv} {BCONV}"])
    return {
        "model_name": model_name, "source": str(source), "target": target, "versions": versions(),
        "input_nchw": list(input_nchw), "int8_form": int8_form, "ops": ops, "lce_bconv2d": bconv,
        "binary_check": {"ok": not problems, "all_binary_intent_lowered": not summary["float_binary_intent"],
                         "problems": problems},
        "sizes_bytes": {"onnx": source.stat().st_size} | {engine: len(fb) for engine, fb in models.items()},
        "lce_over_fp32": len(models["lce"]) / len(models["tflite_fp32"]), "layers": summary, "parity": parity,
        "gate": gate, "calibration_images": calibration_images, "timing_s": {k: round(v, 3) for k, v in timing_s.items()},
    }


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _sign_zero_lines(entries: list[dict[str, Any]]) -> list[str]:
    """The parity section's account of plain-Sign binarizers fed exactly 0 (torch 0, LCE +1)."""
    if not entries:
        return []
    lines = ["", "Plain `Sign` binarizers (torch.sign(0) = 0, LCE gives +1): exactly-0 inputs on the eval images.", "",
             "| pre-sign tensor | read by | zeros | of values | images with a zero | first images |",
             "|---|---|---:|---:|---:|---|"]
    lines += [f"| {e['tensor']} | {', '.join(e['layers'])} | {e['zeros']} | {e['values']} | {e['images_with_zeros']} | "
              f"{', '.join(map(str, e['first_images'])) or '-'} |" for e in entries]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: every figure comes from ``report`` (the ``report.json`` content)."""
    s = report["sizes_bytes"]
    lay = report["layers"]
    form = report.get("int8_form", "int8")  # reports written before the field: the int8 form
    lines = [f"# Conversion report: {report['model_name']}", "",
             f"Converted from `{report['source']}` with larq-compute-engine {report['versions']['larq_compute_engine']}"
             f" (target `{report['target']}`) in {report['timing_s']['total']:.1f} s.", "",
             f"Integer model (`tflite_int8`): **{form}** form ({INTEGER_FORMS[form]}).", "",
             "## Binary layers", "",
             f"- binary-intent layers: {lay['binary_intent']}; lowered as binary: {lay['binary']}; "
             f"`LceBconv2d` in the flatbuffer: {report['lce_bconv2d']}"
             f" ({'all accounted for' if report['binary_check']['ok'] else 'MISMATCH'})"]
    for item in lay["float_binary_intent"]:
        lines.append(f"- stays float: `{item['name']}` ({item['op']}): {item['reason']}")
    for problem in report["binary_check"]["problems"]:
        lines.append(f"- problem: {problem}")
    grids = report.get("int8_grids")
    if grids:  # convert/int8_qat.py grid_check
        lines += ["", f"## Integer grids in the integer model ({form} form)", "",
                  f"- grid convs (QDQ weights): {grids['grid_convs']}; held exactly (codes and scales) by the int8 "
                  f"weights of the {form} flatbuffer: {grids['exact']}"]
        lines += [f"- not exact: `{name}`" for name in grids["missing"]]
    lines += ["", "## Sizes", "", "| file | bytes |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in s.items()]
    lines += ["", f"LCE / fp32 size ratio: {report['lce_over_fp32']:.4f}; integer model ({form}) calibrated on "
              f"{report['calibration_images']} images.", "",
              "## Parameters and cost", "", "| precision | parameters |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in lay["params"].items()]
    lines += ["", f"MACs (float): {lay['macs']}; binary operations (BOPs): {lay['bops']}", "",
              "| layer | op | precision | params | MACs | BOPs | lowering | rewrites |",
              "|---|---|---|---:|---:|---:|---|---|"]
    lines += [f"| {r['name']} | {r['op']} | {r['precision']} | {r['params']} | {r['macs']} | {r['bops']} | "
              f"{r['lowering']} | {'; '.join(r['rewrites']) or '-'} |" for r in lay["layers"]]
    par = report["parity"]
    lines += ["", "## Parity", "",
              f"{par['images']} {'labelled test' if par['labelled'] else 'random (unlabelled)'} images; reference "
              f"engine: `{par['reference']}`.", "",
              f"\"off\": images whose max abs logit diff exceeds {OFF_THRESHOLD:g} (in a binary net, a pre-sign "
              "value within float rounding of 0 that flips).", "",
              "| engine | top-1 agreement | disagreements | max abs logit diff | median (per image) | images off "
              "| top-1 accuracy |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, e in par["engines"].items():
        acc = _pct(e["top1"]) if "top1" in e else "n/a"
        lines.append(f"| {name} | {_pct(e['agreement'])} | {e['disagreements']} | {e['max_abs_logit_diff']:.3g} | "
                     f"{e['median_max_abs_logit_diff']:.3g} | {e['images_off']} | {acc} |")
    gate = report["gate"]
    limits = (f"agreement >= {_pct(gate['min_agreement'])} (int8: >= {_pct(gate['min_int8_agreement'])})"
              + (f", max abs logit diff <= {gate['max_logit_error']:g}" if gate["max_logit_error"] is not None else ""))
    lines += ["", f"Parity gate ({limits}): " + ("passed" if gate["passed"] else "FAILED, no bundle written: "
                                                 + "; ".join(gate["failures"]))]
    for name, e in par["engines"].items():
        if e["listed"]:
            lines += ["", f"Disagreements of `{name}` (first {len(e['listed'])} of {e['disagreements']}):", "",
                      f"| image | {par['reference']} | {name} | {par['reference']} margin | {name} margin |",
                      "|---:|---:|---:|---:|---:|"]
            ref_key = f"{par['reference']}_pred"
            ref_margin = f"{par['reference']}_margin"
            lines += [f"| {d['index']} | {d[ref_key]} | {d['pred']} | {d[ref_margin]:.4g} | {d['margin']:.4g} |"
                      for d in e["listed"]]
    lines += _sign_zero_lines(par.get("sign_zero", []))
    blobs = [(name, report[key]) for key, name in (("engine_blob", "model.blob"), ("engine_mcu_blob", "model_mcu.blob"))
             if key in report]
    if blobs:
        lines += ["", "## C engine blobs", ""]
    for name, blob in blobs:
        lines.append(f"- `{name}`: {blob['bytes']} bytes, arena {blob['arena_bytes']} bytes, {len(blob['ops'])} ops "
                     f"(format {blob['format_version']})" if blob["written"] else f"- `{name}`: not written: {blob['reason']}")
    lines += ["", "## Ops per model", ""]
    for model, hist in report["ops"].items():
        lines.append(f"- {model}: " + ", ".join(f"{k} {v}" for k, v in hist.items()))
    t = report["timing_s"]
    lines += ["", "## Timing (s)", "", ", ".join(f"{k} {v:.2f}" for k, v in t.items()), ""]
    return "\n".join(lines)
