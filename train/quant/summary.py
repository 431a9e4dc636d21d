"""A bit-aware model summary: per weight layer and in total, parameters and bytes per precision,
MACs and binary operations (BOPs), which layers are binary and why the others stay float.

Conventions: weights take their precision's packed size (``Precision.weight_bytes``: a 1-bit weight
1/8 byte, a b-bit one b/8, a float one 4 bytes); every other parameter (BatchNorm, thresholds,
quantizer steps) is float. BOPs are ``Precision.binary_ops`` of a layer's MACs (MACs x weight bits x
activation bits; 1-bit x 1-bit: the MACs); ``ops = float MACs + BOPs / 64`` (the Bi-Real/ReActNet
count of operations, which counts a quantized layer by its BOPs).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from bitat_edge.precision import FLOAT
from train.models.stats import count_macs
from train.quant.specs import layer_specs


def summary_dict(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Per-layer rows and totals (see the module docstring for the conventions)."""
    macs = count_macs(model, input_shape)
    modules = dict(model.named_modules())
    rows = []
    totals = {"binary_params": 0, "low_bit_params": 0, "float_weight_params": 0, "binary_macs": 0,
              "low_bit_macs": 0, "float_macs": 0, "bytes": 0.0, "bops": 0, "binary_layers": 0}
    for spec in layer_specs(model):
        params = modules[spec.name].weight.numel()
        binary = spec.precision.is_binary
        layer_macs = int(macs.get(spec.name, 0))
        row = {
            "name": spec.name,
            "op": spec.op,
            "precision": str(spec.precision),
            "reason": spec.reason,
            "params": params,
            "bytes": spec.precision.weight_bytes(params),
            "macs": layer_macs,
            "bops": spec.precision.binary_ops(layer_macs),
        }
        rows.append(row)
        bits = spec.precision.weight_bits
        totals["binary_params" if bits == 1 else "float_weight_params" if bits == FLOAT.weight_bits
               else "low_bit_params"] += params
        totals["binary_macs" if binary else "float_macs" if spec.precision.is_float else "low_bit_macs"] += layer_macs
        totals["bytes"] += row["bytes"]
        totals["bops"] += row["bops"]
        totals["binary_layers"] += binary
    weights = totals["binary_params"] + totals["low_bit_params"] + totals["float_weight_params"]
    other = sum(p.numel() for p in model.parameters()) - weights
    totals["other_float_params"] = other
    totals["params"] = weights + other
    totals["bytes"] += FLOAT.weight_bytes(other)
    totals["float32_bytes"] = FLOAT.weight_bytes(totals["params"])
    totals["macs"] = totals["binary_macs"] + totals["low_bit_macs"] + totals["float_macs"]
    totals["ops"] = totals["float_macs"] + totals["bops"] / 64
    totals["layers"] = len(rows)
    return {"layers": rows, "totals": totals}


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.2f}"


def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The summary as a fixed-width text table."""
    data = summary_dict(model, input_shape)
    header = f"{'layer':<28} {'op':<15} {'prec':<6} {'params':>8} {'bytes':>9} {'MACs':>9} {'BOPs':>9}  not quantized because"
    lines = [header, "-" * len(header)]
    for r in data["layers"]:
        lines.append(
            f"{r['name']:<28} {r['op']:<15} {r['precision']:<6} {_human(r['params']):>8} {_human(r['bytes']):>9} "
            f"{_human(r['macs']):>9} {_human(r['bops']):>9}  {r['reason']}"
        )
    t = data["totals"]
    lines += [
        "-" * len(header),
        f"binary layers: {t['binary_layers']} of {t['layers']}",
        f"params: {_human(t['params'])} ({_human(t['binary_params'])} 1-bit weights, "
        f"{_human(t['low_bit_params'])} 2-8-bit weights, {_human(t['float_weight_params'])} float weights, "
        f"{_human(t['other_float_params'])} other float)",
        f"size: {_human(t['bytes'])}B packed vs {_human(t['float32_bytes'])}B all-float32 "
        f"({t['float32_bytes'] / max(t['bytes'], 1):.1f}x smaller)",
        f"MACs: {_human(t['macs'])} ({_human(t['binary_macs'])} binary, {_human(t['low_bit_macs'])} 2-8-bit, "
        f"{_human(t['float_macs'])} float); "
        f"BOPs: {_human(t['bops'])}; OPs (float MACs + BOPs/64): {_human(t['ops'])}",
    ]
    return "\n".join(lines)
