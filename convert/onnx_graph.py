"""Load an ONNX classifier, fix its shapes, simplify it, fold constants and find its binary layers.

Stages: read -> QONNX ops to standard ONNX (``convert.qonnx``) -> check, fix the input shape ->
remove training scaffolding (``convert.simplify``) -> fold constants -> find the binarizers
(``convert.binarizers``) -> plan every Conv. The result, a ``Graph``, is what ``keras_builder``
walks: nodes in topological order (constant producers removed), the constants by tensor name, static
shapes (NCHW, batch 1), the binarizers and one ``ConvPlan`` per Conv that holds the final lowering
decision: what the Conv reads, its canonical padding, whether it becomes an LCE binary convolution,
how the builder emits it and which rewrites made it binary.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from onnx import helper, numpy_helper, shape_inference

from convert import binarizers, padding, qdq, qonnx, simplify
from convert.errors import ConvertError, OnnxLoadError, UnsupportedOpError

# LCE's IsBinaryFilter tolerance: every |W / scale[o]| within this of 1.
BINARY_FILTER_TOLERANCE = 0.005
# Weights within this of +/-scale[o] (but not within the tolerance) are reported as a tolerance miss.
NEAR_BINARY = 0.1
GROUPED_BINARY_REASON = ("grouped binary convolutions run only in LCE's indirect BGEMM kernel, which neither LCE's "
                         "interpreter nor its benchmark binary uses by default; each group is a float convolution")

# What the loader does to ops before any lowering handler runs: (op, accepted, becomes), for the op registry.
LOAD_RULES = (
    ("Constant", "tensor `value`", "folded"),
    ("(any op)", "all inputs constant", "evaluated with `onnx.reference` and folded (e.g. the exporter's "
                                        "`Shape` -> `Gather` -> `Concat` chains)"),
)


@dataclass(frozen=True)
class ConvGeometry:
    """A Conv node's kernel, strides and dilations (H, W) and its group count."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    groups: int

    @property
    def effective_kernel(self) -> tuple[int, int]:
        """The kernel with dilation applied, per spatial dimension."""
        kh, kw = (padding.effective_kernel(k, d) for k, d in zip(self.kernel, self.dilations, strict=True))
        return kh, kw


class ConvLowering(Enum):
    """How a Conv becomes Keras layers: ``plan_conv`` decides, the Conv handler (``convert/lowering.py``) executes it.

    LCE fuses an explicit pad before a conv as TF SAME padding whenever its weak SAME check passes
    (see ``convert/padding.py``), so the plan's padding is canonical and only exact SAME padding
    ever reaches LCE as something it may fuse.
    """

    VALID = "VALID"  # no padding is read: a VALID conv
    SAME = "SAME"  # zero padding that is exactly TF SAME: padding="same" (binary: LCE same-zero, arm only)
    EXPLICIT_PAD = "explicit pad"  # any other padding: Pad2D(value), then a VALID conv
    SAME_ONE = "+1 padding fused (same-one)"  # binary, +1, TF-SAME-shaped: PadV2(+1) on the binarized tensor
    # binary, +1, not TF-SAME-shaped (e.g. stride 2 on an even input, which LCE would miscompile):
    # pad the tensor *before* the binarizer with +1 (sgn(1) = +1, so it is exact), binarize, VALID conv
    ONE_BEFORE_SIGN = "+1 padding applied before the binarizer, VALID"

    @property
    def explicit_pad(self) -> bool:
        """Whether a ``Pad2D`` precedes the conv."""
        return self in (ConvLowering.EXPLICIT_PAD, ConvLowering.SAME_ONE, ConvLowering.ONE_BEFORE_SIGN)


@dataclass(frozen=True)
class ConvPlan:
    """The final lowering decision for one ONNX Conv.

    ``data`` is the tensor the Conv reads once a preceding ``Pad`` is folded in (``folded_pad``);
    ``pads`` (top, bottom, left, right) is the total padding of ``data``, canonical (trailing
    padding no window reads is dropped), and ``pad_value`` the value the lowering pads with.
    ``binarized_from`` is the tensor *before* the binarizer when the Conv reads a binarized tensor
    (a binary-intent layer); ``binary`` says whether it becomes an ``LceBconv2d`` and ``reason``
    why not (a Conv whose input mixes a sign with terms that do not cancel is binary-intent too,
    with that reason). ``zero_correction``: the source pads with 0, the lowering pads with +1 and
    subtracts the padded taps' constant contribution (``convert.zero_pad``). ``rewrites`` lists what
    the simplification and binarizer recognition did for this layer.
    """

    node: str
    data: str
    geometry: ConvGeometry
    depthwise: bool
    pads: tuple[int, int, int, int]
    pad_value: float
    lowering: ConvLowering
    folded_pad: str | None = None
    binarized_from: str | None = None
    binary: bool = False
    reason: str = ""
    zero_correction: bool = False
    rewrites: tuple[str, ...] = ()

    @property
    def binary_intent(self) -> bool:
        """Whether the source meant this layer to be binary."""
        return self.binarized_from is not None or bool(self.reason)

    @property
    def grouped(self) -> bool:
        """A grouped convolution that is not depthwise: lowered as one convolution per group."""
        return self.geometry.groups > 1 and not self.depthwise

    @property
    def reads(self) -> str:
        """The tensor the lowering starts from."""
        return self.binarized_from if self.lowering is ConvLowering.ONE_BEFORE_SIGN else self.data

    @property
    def padding_mode(self) -> str:
        """The Keras conv's ``padding`` argument."""
        return "same" if self.lowering is ConvLowering.SAME else "valid"

    @property
    def description(self) -> str:
        """The report's wording of the lowering."""
        if self.lowering is ConvLowering.SAME and self.binary:
            text = "same-zero (LCE edge correction)"
        elif self.lowering is ConvLowering.EXPLICIT_PAD:
            text = f"explicit pad ({self.pad_value:g}), VALID"
        else:
            text = self.lowering.value
        if self.zero_correction:
            text = f"zero padding as {text}, minus a constant edge correction"
        return f"binary, {text}" if self.binary else text


@dataclass
class Graph:
    """A checked ONNX classifier with static shapes (see module docstring)."""

    path: str
    model: onnx.ModelProto
    nodes: list[onnx.NodeProto]
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    input_name: str
    input_shape: tuple[int, int, int, int]
    output_name: str
    reference: bytes = b""  # the source model as standard ONNX (QONNX ops rewritten), for ONNX Runtime
    rewrites: simplify.Rewrites = field(default_factory=simplify.Rewrites)  # by the tensor each one kept
    binarizers: dict[str, str] = field(default_factory=dict)  # binarized tensor -> its source tensor
    binarizer_nodes: set[str] = field(default_factory=set)  # helper nodes absorbed into a binarizer
    plain_signs: set[str] = field(default_factory=set)  # binarized tensors from a plain Sign (0 -> +1 in LCE)
    conv_plans: dict[str, ConvPlan] = field(default_factory=dict)
    weight_grids: dict[str, qdq.WeightGrid] = field(default_factory=dict)  # conv weight -> its integer grid
    quantize_points: dict[str, qdq.QuantizePoint] = field(default_factory=dict)  # DequantizeLinear output -> point
    absorbed_nodes: set[str] = field(default_factory=set)  # QuantizeLinear nodes absorbed into a quantize point

    @property
    def has_qdq(self) -> bool:
        """Whether the graph carries integer grids (QDQ) that the int8 model must keep."""
        return bool(self.weight_grids or self.quantize_points)

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if tensor in n.input]

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        for node in self.nodes:
            if tensor in node.output:
                return node
        return None

    def op_histogram(self) -> dict[str, int]:
        return dict(Counter(n.op_type for n in self.nodes))


def attrs(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _read_model(path: Path) -> onnx.ModelProto:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise OnnxLoadError(f"{path}: ONNX file not found; check the path") from None
    except OSError as exc:
        raise OnnxLoadError(f"{path}: cannot read the ONNX file ({exc.strerror})") from None
    if not data:
        raise OnnxLoadError(f"{path}: the ONNX file is empty; re-export the model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OnnxLoadError(
            f"{path}: not a valid ONNX file (corrupt or truncated: {exc}); re-export the model"
        ) from None
    if not model.graph.node:
        raise OnnxLoadError(f"{path}: not a valid ONNX file (it holds no graph nodes); re-export the model")
    garbled = _garbled_string(model)
    if garbled:
        raise OnnxLoadError(f"{path}: not a valid ONNX file (a {garbled} is not valid UTF-8: the file is corrupt); "
                            "re-export the model")
    return model


def _garbled_string(message: Message) -> str:
    """The first string field that is not valid UTF-8 (protobuf hands such a field over as ``bytes``), or ""."""
    for descriptor, value in message.ListFields():
        values = value if descriptor.label == FieldDescriptor.LABEL_REPEATED else [value]
        if descriptor.type == FieldDescriptor.TYPE_STRING and any(isinstance(v, bytes) for v in values):
            return f"{message.DESCRIPTOR.name}.{descriptor.name}"
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            for item in values:
                found = _garbled_string(item)
                if found:
                    return found
    return ""


def one_line(text: str) -> str:
    """A library's multi-line message (the ONNX checker's reason, then its ``==> Context:`` naming the node)
    as one line: non-empty lines joined with "; "."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "; ".join(line.removeprefix("==> Context: ") for line in lines if line)


def _tensors(graph: onnx.GraphProto, where: str = "") -> list[tuple[str, onnx.TensorProto]]:
    """Every tensor the graph stores (initializers, tensor attributes, also inside subgraphs), by name."""
    found = [(f"initializer '{t.name}'", t) for t in graph.initializer]
    for node in graph.node:
        for a in node.attribute:
            label = f"attribute '{a.name}' of node '{node.name or node.output[0] if node.output else '?'}'"
            found += [(label, t) for t in ([a.t] if a.HasField("t") else []) + list(a.tensors)]
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                found += _tensors(sub)
    return found


def _check_tensors(model: onnx.ModelProto, path: Path) -> None:
    """Every stored tensor must be internal and hold exactly what its type and dims say (checked before the
    ONNX checker and shape inference, whose C++ reads a short ``raw_data`` past its end)."""
    for label, tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise OnnxLoadError(f"{path}: {label} keeps its data in an external file, which is not supported; "
                                "re-export the model with its weights inside")
        try:
            numpy_helper.to_array(tensor)
        except Exception as exc:  # numpy_helper raises ValueError/TypeError/KeyError/... on inconsistent tensors
            raise OnnxLoadError(f"{path}: {label} is corrupt ({one_line(str(exc)) or type(exc).__name__}); "
                                "re-export the model") from None


def _crash_safe(work: Callable[[], bytes], path: Path) -> bytes:
    """``work()`` run in a forked child: the ONNX library's C++ checker and shape inference crash (SIGSEGV,
    SIGFPE) on some malformed models instead of raising, e.g. a stride of 0. Returns its bytes; re-raises
    its ``ConvertError``; a crash or any other exception is an ``OnnxLoadError``. Without ``os.fork``
    (not Linux or macOS) it runs in this process."""
    if not hasattr(os, "fork"):
        return work()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        faulthandler.disable()  # a crash here is expected and reported by the parent, without a dump
        try:
            payload = b"R" + work()
        except ConvertError as exc:
            payload = b"E" + pickle.dumps(exc)
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {one_line(str(exc))}"
            payload = b"E" + pickle.dumps(OnnxLoadError(f"{path}: checking the model failed ({reason})"))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or not payload:
        code = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        name = signal.Signals(code).name if code in signal.Signals._value2member_map_ else f"exit status {status}"
        raise OnnxLoadError(f"{path}: the ONNX library crashed ({name}) while checking the model; the file is "
                            "corrupt or not a valid model")
    if payload[:1] == b"E":
        raise pickle.loads(payload[1:])  # noqa: S301 - our own child's exception
    return payload[1:]


def _check(model: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.checker.check_model(model, full_check=False)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxLoadError(f"{path}: the ONNX checker rejects the model ({one_line(str(exc)) or type(exc).__name__}); "
                            "the file is corrupt, truncated or not a valid model") from None
    except UnicodeDecodeError:  # the checker's message quotes a name that is not valid UTF-8
        raise OnnxLoadError(f"{path}: the ONNX checker rejects the model (a name or string in it is not valid "
                            "UTF-8); the file is corrupt") from None


def _fix_input_shape(model: onnx.ModelProto, path: Path) -> tuple[str, tuple[int, int, int, int]]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise OnnxLoadError(f"{path}: the model must have exactly one input image tensor, it has {len(inputs)}")
    if len(model.graph.output) != 1:
        raise OnnxLoadError(f"{path}: the model must have exactly one output (the logits), it has "
                            f"{len(model.graph.output)}")
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise OnnxLoadError(f"{path}: input '{inp.name}' must be float32")
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise OnnxLoadError(f"{path}: input '{inp.name}' must be a 4-D NCHW image tensor, it has rank {len(dims)}")
    shape = []
    for axis, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif axis == 0:
            shape.append(1)  # LCE runs batch 1; a dynamic batch is fixed to it.
        else:
            label = dim.dim_param or "?"
            raise OnnxLoadError(
                f"{path}: input '{inp.name}' has a dynamic dimension {axis} ('{label}'); only the batch "
                "dimension may be dynamic, re-export with a fixed input size"
            )
    if shape[0] != 1:
        raise OnnxLoadError(f"{path}: input '{inp.name}' has batch {shape[0]}; LCE needs batch 1, re-export with batch 1")
    for dim, value in zip(dims, shape, strict=True):
        dim.Clear()
        dim.dim_value = value
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    if out_dims and not out_dims[0].HasField("dim_value"):
        out_dims[0].Clear()
        out_dims[0].dim_value = 1
    return inp.name, (shape[0], shape[1], shape[2], shape[3])


def _infer_shapes(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        raise OnnxLoadError(f"{path}: shape inference failed ({one_line(str(exc)) or type(exc).__name__}); "
                            "the model is inconsistent") from None


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The fully known shapes shape inference recorded, by tensor name."""
    shapes: dict[str, tuple[int, ...]] = {}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator  # imported by load_graph before it forks

    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        opset = max(opset, 19)  # onnx.reference implements them from opset 19 on (same int8 semantics)

    names = [f"in{i}" for i in range(len(inputs))]
    renamed = helper.make_node(node.op_type, [names[i] if n else "" for i, n in enumerate(node.input)],
                               [f"out{i}" for i in range(len(node.output))], domain=node.domain)
    renamed.attribute.extend(node.attribute)
    evaluator = ReferenceEvaluator(
        helper.make_model(
            helper.make_graph([renamed], "fold",
                              [helper.make_tensor_value_info(names[i], onnx.TensorProto.UNDEFINED, None)
                               for i, x in enumerate(inputs) if x is not None],
                              [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                               for o in renamed.output]),
            opset_imports=[helper.make_opsetid("", opset)],
        )
    )
    feeds = {names[i]: x for i, x in enumerate(inputs) if x is not None}
    return [np.asarray(v) for v in evaluator.run(None, feeds)]


def _fold_constants(
    graph: onnx.GraphProto, shapes: dict[str, tuple[int, ...]], opset: int, dequantized: dict[str, qdq.Dequantized]
) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """Fold constant nodes; a folded DequantizeLinear's codes and scales are kept in ``dequantized``."""
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Constant":
            a = attrs(node)
            if "value" not in a:
                raise UnsupportedOpError(node.name or node.output[0], "Constant", "only a tensor 'value' is supported")
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
            continue
        if node.op_type == "Shape" and node.input[0] in shapes and not attrs(node):
            consts[node.output[0]] = np.array(shapes[node.input[0]], dtype=np.int64)
            continue
        present = [i for i in node.input if i]
        # Any node whose inputs are all constants is evaluated here (the exporter's shape arithmetic,
        # e.g. F.pad's pads or ``x.view(x.size(0), -1)``).
        if present and all(i in consts for i in present):
            inputs = [consts[i] if i else None for i in node.input]
            try:
                values = _evaluate(node, inputs, opset)
            except Exception as exc:  # onnx.reference raises whatever its op implementation raises
                raise UnsupportedOpError(node.name or node.output[0], node.op_type, "its constant inputs cannot be "
                                         f"evaluated ({type(exc).__name__}: {one_line(str(exc))[:120]})") from None
            if len(values) != len(node.output):
                raise UnsupportedOpError(node.name or node.output[0], node.op_type, "its evaluation gives "
                                         f"{len(values)} outputs for {len(node.output)}")
            consts.update(zip(node.output, values, strict=True))
            record = qdq.Dequantized.of(node, inputs) if node.op_type == "DequantizeLinear" else None
            if record is not None:
                dequantized[node.output[0]] = record
            continue
        kept.append(node)
    return kept, consts


def _rebuild(model: onnx.ModelProto, nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The model with only ``nodes`` left and every constant they read as an initializer."""
    used = {i for n in nodes for i in n.input} | {o.name for o in model.graph.output}
    graph = helper.make_graph(
        nodes, model.graph.name, [i for i in model.graph.input if i.name not in consts], list(model.graph.output),
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k in used])
    return helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)


def _fold(model: onnx.ModelProto, path: Path, opset: int, dequantized: dict[str, qdq.Dequantized]
          ) -> onnx.ModelProto:
    """Fold constants, then re-infer on the folded graph (pads or shapes computed by now-folded nodes
    become static), until nothing more folds; the final model carries its inferred shapes."""
    model = _infer_shapes(model, path)
    nodes, consts = _fold_constants(model.graph, _static_shapes(model), opset, dequantized)
    while True:
        model = _infer_shapes(_rebuild(model, nodes, consts), path)
        folded_nodes, consts = _fold_constants(model.graph, _static_shapes(model), opset, dequantized)
        if len(folded_nodes) == len(nodes):
            return model
        nodes = folded_nodes


def _folded(model: onnx.ModelProto, path: Path, opset: int) -> bytes:
    """Check and infer shapes, then simplify (``convert.simplify``) and fold constants twice: before folding
    (weight expressions are still visible, so their STE is removed exactly) and after it (every shape is
    static by then, which the STE rules check). Pickled: the final inferred model, serialized, the records
    of the folded DequantizeLinear nodes (``qdq.Dequantized`` by output name) and the rewrites."""
    _check(model, path)
    model = _infer_shapes(model, path)
    dequantized: dict[str, qdq.Dequantized] = {}
    rewrites = simplify.Rewrites()
    for _ in range(2):
        model = _fold(simplify.simplify(model, rewrites), path, opset, dequantized)
    return pickle.dumps((model.SerializeToString(), dequantized, rewrites))


def load_graph(path: str | os.PathLike[str]) -> Graph:
    """Read, check and analyse an ONNX classifier; raise ``OnnxLoadError``/``UnsupportedOpError``."""
    path = Path(path)
    model = _read_model(path)
    _check_tensors(model, path)
    model = qonnx.standardise(model)
    input_name, input_shape = _fix_input_shape(model, path)
    reference = model.SerializeToString()
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise OnnxLoadError(f"{path}: opset {opset} is too old; re-export with opset_version >= 13")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(node.name or node.output[0], f"{node.domain}.{node.op_type}",
                                     "custom-domain ops are not supported")
    import onnx.reference  # noqa: F401 - once here, not in every forked child
    payload = _crash_safe(lambda: _folded(model, path, opset), path)
    folded, dequantized, rewrites = pickle.loads(payload)  # noqa: S301 - written by our own child process
    model = onnx.ModelProto.FromString(folded)
    nodes = list(onnx.ModelProto.FromString(folded).graph.node)  # edited by binarizers.find, the model is not
    consts = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for i, node in enumerate(nodes):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    graph = Graph(str(path), model, nodes, consts, _static_shapes(model), input_name, input_shape,
                  model.graph.output[0].name, reference=reference, rewrites=rewrites)
    binarizers.find(graph)
    qdq.analyse(graph, dequantized)
    graph.conv_plans = {node.name: plan_conv(graph, node) for node in nodes if node.op_type == "Conv"}
    return graph


def onnx_pads(graph: Graph, node: onnx.NodeProto, kernel: tuple[int, int], strides: tuple[int, int],
               dilations: tuple[int, int]) -> tuple[int, int, int, int]:
    """A Conv/pool node's padding as (top, bottom, left, right), resolving ``auto_pad``."""
    a = attrs(node)
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        p = list(a.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise UnsupportedOpError(node.name, node.op_type, f"only 2-D padding is supported, got pads={p}")
        if min(p) < 0:
            raise UnsupportedOpError(node.name, node.op_type, f"negative pads {p} are not supported")
        return (p[0], p[2], p[1], p[3])
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    _, _, h, w = graph.shapes[node.input[0]]
    out = []
    for size, k, s, d in ((h, kernel[0], strides[0], dilations[0]), (w, kernel[1], strides[1], dilations[1])):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        out.extend((small, large) if auto_pad == "SAME_UPPER" else (large, small))
    return (out[0], out[1], out[2], out[3])


def conv_geometry(graph: Graph, node: onnx.NodeProto) -> ConvGeometry:
    """The kernel, strides, dilations and groups of a Conv node."""
    a = attrs(node)
    weight = graph.consts.get(node.input[1])
    if weight is None or weight.ndim != 4:
        raise UnsupportedOpError(node.name, node.op_type, "only 2-D convolutions with constant weights are supported")
    kernel = tuple(a.get("kernel_shape", weight.shape[2:]))
    strides = tuple(a.get("strides", (1, 1)))
    dilations = tuple(a.get("dilations", (1, 1)))
    return ConvGeometry((kernel[0], kernel[1]), (strides[0], strides[1]), (dilations[0], dilations[1]),
                        int(a.get("group", 1)))


def pad_node_spatial(graph: Graph, node: onnx.NodeProto) -> tuple[tuple[int, int, int, int], float]:
    """A 4-D constant-mode Pad node's spatial pads (top, bottom, left, right) and value."""
    a = attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise UnsupportedOpError(node.name, "Pad", f"mode '{mode}' is not supported (only 'constant')")
    if node.input[1] not in graph.consts:
        raise UnsupportedOpError(node.name, "Pad", "the pads input must be a constant")
    pads = [int(v) for v in graph.consts[node.input[1]]]
    value = 0.0
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in graph.consts:
            raise UnsupportedOpError(node.name, "Pad", "the constant_value input must be a constant")
        value = float(np.asarray(graph.consts[node.input[2]]).ravel()[0])
    rank = len(graph.shapes.get(node.input[0], ()))
    if rank != 4:
        raise UnsupportedOpError(node.name, "Pad", "only 4-D (NCHW) inputs are supported")
    if len(node.input) > 3 and node.input[3]:
        axes = [int(x) % 4 for x in graph.consts[node.input[3]]]
        full = [0] * 8
        for i, axis in enumerate(axes):
            full[axis], full[axis + 4] = pads[i], pads[i + len(axes)]
        pads = full
    if len(pads) != 8 or pads[0] or pads[1] or pads[4] or pads[5]:
        raise UnsupportedOpError(node.name, "Pad", f"only spatial (H, W) padding is supported, got pads={pads}")
    if min(pads) < 0:
        raise UnsupportedOpError(node.name, "Pad", f"negative pads (cropping) are not supported, got {pads}")
    return (pads[2], pads[6], pads[3], pads[7]), value


def binary_filter_scale(weight: np.ndarray) -> np.ndarray | None:
    """Per-output-channel scale if ``weight`` (OIHW) is +/-scale[o] (LCE's IsBinaryFilter), else None."""
    scale = np.abs(weight.reshape(weight.shape[0], -1)[:, 0]).astype(np.float64)
    if np.any(scale == 0):
        return None
    ratio = np.abs(weight.reshape(weight.shape[0], -1) / scale[:, None])
    return scale if np.all(np.abs(ratio - 1.0) <= BINARY_FILTER_TOLERANCE) else None


def weight_miss(weight: np.ndarray) -> str:
    """Why ``weight`` (OIHW) fails ``binary_filter_scale``, naming a miss by the tolerance alone."""
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    zeros = int(np.sum(flat == 0))
    if zeros:
        return f"weights are not +/-scale per output channel ({zeros} are exactly 0; torch.sign(0) is 0)"
    deviation = np.abs(np.abs(flat) / np.abs(flat[:, :1]) - 1.0).max(axis=1)
    if deviation.max() > NEAR_BINARY:
        return "weights are not +/-scale per output channel"
    missed = np.flatnonzero(deviation > BINARY_FILTER_TOLERANCE)
    return (f"weights miss LCE's +/-scale check only by its tolerance: max |W/scale - 1| = {deviation.max():.3g} > "
            f"{BINARY_FILTER_TOLERANCE} in {len(missed)} of {len(flat)} output channels (first: "
            f"{', '.join(map(str, missed[:5]))})")


def _float_reason(graph: Graph, node: onnx.NodeProto, depthwise: bool, pads: tuple[int, int, int, int],
                  pad_value: float, grouped: bool = False) -> str:
    """Why a binary-intent Conv cannot become an ``LceBconv2d`` ("" when it can)."""
    if depthwise:
        return "depthwise convolutions have no binary kernel in LCE"
    if grouped:
        return GROUPED_BINARY_REASON
    weight = graph.consts[node.input[1]]
    if binary_filter_scale(weight) is None:
        return weight_miss(weight)
    if any(pads) and pad_value not in (0.0, 1.0):
        return f"padding value {pad_value} is neither 1 (binary) nor 0 (zero padding)"
    return ""


def _lowering(binary: bool, pads: tuple[int, int, int, int], pad_value: float, same: bool) -> ConvLowering:
    if not any(pads):
        return ConvLowering.VALID
    if binary and pad_value == 1.0:
        return ConvLowering.SAME_ONE if same else ConvLowering.ONE_BEFORE_SIGN
    if pad_value == 0.0 and same:
        return ConvLowering.SAME
    return ConvLowering.EXPLICIT_PAD


def plan_conv(graph: Graph, node: onnx.NodeProto) -> ConvPlan:
    """Decide how a Conv is lowered: what it reads, its canonical padding, binary or not, and how."""
    geometry = conv_geometry(graph, node)
    if max(geometry.strides) > 1 and max(geometry.dilations) > 1:
        raise UnsupportedOpError(node.name, "Conv", "strides > 1 together with dilations > 1")
    data, folded_pad = node.input[0], None
    kh, kw = geometry.effective_kernel
    pads, pad_value = onnx_pads(graph, node, geometry.kernel, geometry.strides, geometry.dilations), 0.0
    pad_node = graph.producer(data)
    if pad_node is not None and pad_node.op_type == "Pad":
        extra, value = pad_node_spatial(graph, pad_node)
        if not any(pads) or value == 0.0:
            data, folded_pad, pad_value = pad_node.input[0], pad_node.name, value
            pads = tuple(a + b for a, b in zip(pads, extra, strict=True))
    _, channels, h, w = graph.shapes[data]
    depthwise = geometry.groups > 1 and geometry.groups == channels
    (sh, sw), (top, bottom, left, right) = geometry.strides, pads
    pads = (*padding.canonical_pads(h, kh, sh, top, bottom), *padding.canonical_pads(w, kw, sw, left, right))
    same = any(pads) and padding.is_same(h, kh, sh, *pads[:2]) and padding.is_same(w, kw, sw, *pads[2:])
    binarized_from = graph.binarizers.get(data)
    if binarized_from is None:
        reason = binarizers.sign_residue(graph, data)
    else:
        reason = _float_reason(graph, node, depthwise, pads, pad_value, grouped=geometry.groups > 1 and not depthwise)
    binary = binarized_from is not None and not reason
    # Zero padding that LCE cannot fuse exactly: +1 padding, then subtract the padded taps (exact).
    zero_correction = binary and any(pads) and pad_value == 0.0 and not same
    rewrites = graph.rewrites.of(data, node.input[1])
    if zero_correction:
        pad_value, rewrites = 1.0, (*rewrites, "zero padding lowered as +1 padding minus a constant edge correction")
    return ConvPlan(node.name, data, geometry, depthwise, pads, pad_value, _lowering(binary, pads, pad_value, same),
                    folded_pad, binarized_from, binary, reason, zero_correction, rewrites)
