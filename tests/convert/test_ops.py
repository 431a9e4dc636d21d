"""The op registry (no TensorFlow here): one rule per op, each documented, handlers found by op."""

from __future__ import annotations

import pytest

from convert.ops import OpRegistry, OpRule


def _noop(builder, node) -> None:
    """A handler that lowers nothing."""


def test_registry_dispatches_by_op_and_documents_every_rule():
    registry = OpRegistry()
    registry.lowers("Relu", becomes="`ReLU`")(_noop)
    registry.lowers("Identity", "Dropout", becomes="pass-through")(_noop)
    registry.loaded("Constant", "tensor `value`", "folded")
    assert registry.handler("Relu") is _noop and registry.handler("Dropout") is _noop
    assert registry.handler("Constant") is None and registry.handler("LSTM") is None
    assert registry.lines() == {"Relu": "-> `ReLU`", "Identity": "-> pass-through", "Dropout": "-> pass-through",
                                "Constant": "tensor `value` -> folded"}
    assert registry.markdown_table().splitlines()[2:] == [
        "| `Relu` |  | `ReLU` |", "| `Identity`, `Dropout` |  | pass-through |", "| `Constant` | tensor `value` | folded |"]


def test_registry_rejects_a_second_rule_for_an_op_and_an_undocumented_rule():
    registry = OpRegistry()
    registry.lowers("Relu", becomes="`ReLU`")(_noop)
    with pytest.raises(ValueError, match="'Relu' is registered twice"):
        registry.lowers("Clip", "Relu", becomes="clip")(_noop)
    assert registry.handler("Clip") is None  # nothing of the rejected rule was kept
    with pytest.raises(ValueError, match="does not say what"):
        registry.add(OpRule(("Sigmoid",), "", "", _noop))
