"""The supported ONNX op set, one line per op: what is accepted and what it becomes (NHWC)."""

from __future__ import annotations

SUPPORTED_OPS: dict[str, str] = {
    "Conv": "2-D, constant weight (+ bias), any kernel/stride/pads/auto_pad/dilation (not stride>1 with "
            "dilation>1), group 1 or depthwise -> Conv2D / DepthwiseConv2D; on a binarized input with "
            "+/-scale weights -> LceBconv2d",
    "BatchNormalization": "inference mode, constant statistics -> per-channel Mul + Add (fused by LCE)",
    "Relu": "-> ReLU",
    "Clip": "constant min/max; min 0 -> ReLU / ReLU6, else clip_by_value",
    "PRelu": "constant slope (per channel or scalar) -> PReLU",
    "Sigmoid": "-> sigmoid",
    "HardSigmoid": "alpha, beta -> clip(alpha * x + beta, 0, 1)",
    "HardSwish": "-> x * relu6(x + 3) / 6",
    "Softmax": "2-D, last axis -> Softmax",
    "Add": "tensor + tensor (same rank) or tensor + constant (NCHW broadcast re-ordered to NHWC)",
    "Sub": "as Add; Sub(x, threshold) before a binarizer is the learned threshold",
    "Mul": "as Add",
    "Div": "as Add",
    "Concat": "axis 1 (channels), 2 or 3 of 4-D tensors, axis 1 of 2-D tensors -> Concatenate",
    "MaxPool": "2-D, no dilation, pads none or TF-SAME-shaped -> MaxPool2D",
    "AveragePool": "as MaxPool; padded only with count_include_pad=0 -> AveragePooling2D",
    "GlobalAveragePool": "-> mean over H, W (keepdims)",
    "GlobalMaxPool": "-> max over H, W (keepdims)",
    "Flatten": "axis 1 -> NCHW-order flatten (transpose back first unless H = W = 1)",
    "Reshape": "4-D -> [1, C*H*W] (as Flatten), 2-D -> 2-D, 2-D -> [1, C, H, W]; target shape inferred statically",
    "Gemm": "2-D input, constant B (transB, alpha, beta, bias) -> Dense; binarized input stays float (LCE has "
            "no binary dense kernel)",
    "MatMul": "2-D input times a constant 2-D matrix -> Dense without bias",
    "Pad": "mode constant, constant pads on H/W only, any value -> PadV2; folded into a following Conv",
    "GreaterOrEqual": "only as part of the binarizer Where(GreaterOrEqual(x, 0), 1, -1) -> LceQuantize",
    "Where": "only as the binarizer Where(GreaterOrEqual(x, 0), 1, -1) -> LceQuantize",
    "Sign": "only as the binarizer Sign(Sign(x) + c), 0 < c < 1 -> LceQuantize",
    "Identity": "pass-through",
    "Dropout": "pass-through (inference)",
    "Constant": "folded",
    "(any op)": "a node whose inputs are all constants is evaluated (onnx.reference) and folded, e.g. "
                 "the exporter's shape arithmetic (Shape of a static tensor, Gather, Concat, Slice, ...)",
}
