"""LCE conversion of a tf-keras model and inspection of any TFLite flatbuffer's op list."""

from __future__ import annotations

from collections import Counter

import larq_compute_engine as lce
import tensorflow as tf
from larq_compute_engine.mlir.python import tflite_schema as schema

from convert.errors import ConvertError

BCONV = "LceBconv2d"


def convert_lce(model: tf.keras.Model, target: str = "arm") -> bytes:
    """The LCE flatbuffer of ``model`` (float32 input and output, batch 1)."""
    try:
        return bytes(lce.convert_keras_model(model, inference_input_type=tf.float32,
                                             inference_output_type=tf.float32, target=target))
    except Exception as exc:  # the MLIR converter raises bare Exceptions / ConverterErrors
        raise ConvertError(f"the LCE converter failed on the built model ({str(exc).splitlines()[0]})") from exc


def op_names(flatbuffer: bytes) -> list[str]:
    """The operator of every op in the main subgraph, in execution order (custom ops by their code)."""
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = []
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            codes.append(code.CustomCode().decode())
        else:
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            codes.append(builtin_names.get(builtin, str(builtin)))
    graph = model.Subgraphs(0)
    return [codes[graph.Operators(i).OpcodeIndex()] for i in range(graph.OperatorsLength())]


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """How many ops of each kind the flatbuffer runs, most frequent first."""
    return dict(Counter(op_names(flatbuffer)).most_common())
