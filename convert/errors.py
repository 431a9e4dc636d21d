"""The convert stage's errors: each message is one sentence naming the input, what is wrong and what to do."""

from __future__ import annotations


class ConvertError(Exception):
    """A conversion cannot proceed; nothing was written."""


class OnnxLoadError(ConvertError):
    """The ONNX file is missing, corrupt, truncated, invalid, or has shapes we cannot fix."""


class UnsupportedOpError(ConvertError):
    """A node uses an op (or an attribute of one) outside the supported op set."""

    def __init__(self, node_name: str, op_type: str, reason: str) -> None:
        self.node_name = node_name
        self.op_type = op_type
        self.reason = reason
        super().__init__(
            f"node '{node_name}' ({op_type}) is not supported: {reason}; "
            "see `bitat-edge convert ops` for the supported op set"
        )

    def __reduce__(self) -> tuple:
        return type(self), (self.node_name, self.op_type, self.reason)


class ParityGateError(ConvertError):
    """The converted models miss the parity gate; no bundle was written, the report was kept aside."""
