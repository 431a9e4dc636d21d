"""Count the exactly-0 inputs of plain-``Sign`` binarizers on real data.

``torch.sign(0)`` is 0; LCE's ``LceQuantize`` (like ``Where(x >= 0, 1, -1)``) gives +1. Where a plain
``Sign`` is lowered as a binarizer (``convert.binarizers``) the converted model differs from the
source exactly where a pre-sign value is 0. The parity check on the eval images decides whether that
matters; this count, in the report, says where it happened.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from convert.engines import onnx_session
from convert.onnx_graph import Graph

MAX_LISTED_IMAGES = 20


def count(graph: Graph, x_nchw: np.ndarray) -> list[dict[str, Any]]:
    """Per plain-Sign binarizer: its pre-sign tensor, the convolutions reading it, how many of its values
    were exactly 0 over ``x_nchw`` (run through the source model in ONNX Runtime) and in which images."""
    sources = sorted({graph.binarizers[t] for t in graph.plain_signs})
    if not sources:
        return []
    model = onnx.load_from_string(graph.reference)
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_tensor_value_info(s, onnx.TensorProto.FLOAT, None)
                              for s in sources if s not in present)
    session = onnx_session(model.SerializeToString())
    name = session.get_inputs()[0].name
    zeros = np.zeros((len(sources), len(x_nchw)), dtype=np.int64)
    sizes = [0] * len(sources)
    for i, x in enumerate(x_nchw):
        for j, value in enumerate(session.run(sources, {name: x[None].astype(np.float32)})):
            zeros[j, i], sizes[j] = np.count_nonzero(value == 0), value.size
    result = []
    for j, source in enumerate(sources):
        images = np.flatnonzero(zeros[j])
        result.append({
            "tensor": source,
            "layers": [p.node for p in graph.conv_plans.values() if p.binarized_from == source],
            "zeros": int(zeros[j].sum()), "values": int(sizes[j] * len(x_nchw)), "images_with_zeros": len(images),
            "first_images": [int(i) for i in images[:MAX_LISTED_IMAGES]]})
    return result
