"""The op registry: each supported ONNX op with its handler and its documentation line, declared once.

``keras_builder`` registers one handler per op with ``OpRegistry.lowers`` and dispatches through
``OpRegistry.handler``; ``bitat-edge convert ops``, ``SUPPORTED_OPS`` and the table in
``convert/SUPPORTED_OPS.md`` are generated from the same rules. A rule without a handler
documents what the loader (``onnx_graph``) does with an op before any handler runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx

Handler = Callable[[Any, onnx.NodeProto], None]
"""Lowers one ONNX node: called with the builder and the node."""


@dataclass(frozen=True)
class OpRule:
    """What happens to one or more ONNX ops: what is accepted, what it becomes, and who does it."""

    ops: tuple[str, ...]
    accepts: str
    becomes: str
    handler: Handler | None = None  # None: done by the loader (folded or absorbed)

    @property
    def line(self) -> str:
        """One line for ``bitat-edge convert ops``."""
        return f"{self.accepts} -> {self.becomes}" if self.accepts else f"-> {self.becomes}"


class OpRegistry:
    """Rules in registration order; each op has at most one."""

    def __init__(self) -> None:
        self._rules: list[OpRule] = []
        self._by_op: dict[str, OpRule] = {}

    def add(self, rule: OpRule) -> None:
        for op in rule.ops:
            if op in self._by_op:
                raise ValueError(f"the op {op!r} is registered twice")
        if not rule.becomes:
            raise ValueError(f"the rule for {', '.join(rule.ops)} does not say what the op becomes")
        self._rules.append(rule)
        self._by_op.update(dict.fromkeys(rule.ops, rule))

    def lowers(self, *ops: str, accepts: str = "", becomes: str) -> Callable[[Handler], Handler]:
        """Decorator: the function lowers ``ops`` (documented by ``accepts`` and ``becomes``)."""

        def register(handler: Handler) -> Handler:
            self.add(OpRule(ops, accepts, becomes, handler))
            return handler

        return register

    def loaded(self, op: str, accepts: str, becomes: str) -> None:
        """Document an op the loader folds or absorbs before any handler runs."""
        self.add(OpRule((op,), accepts, becomes))

    def handler(self, op: str) -> Handler | None:
        rule = self._by_op.get(op)
        return None if rule is None else rule.handler

    @property
    def rules(self) -> tuple[OpRule, ...]:
        return tuple(self._rules)

    def lines(self) -> dict[str, str]:
        """Op -> its documentation line, in registration order."""
        return {op: rule.line for rule in self._rules for op in rule.ops}

    def markdown_table(self) -> str:
        """The op table of ``convert/SUPPORTED_OPS.md``."""
        rows = ["| ONNX op | accepted | becomes |", "|---|---|---|"]
        rows += [f"| {', '.join(f'`{op}`' if op.isidentifier() else op for op in rule.ops)} | {rule.accepts} | "
                 f"{rule.becomes} |" for rule in self._rules]
        return "\n".join(rows) + "\n"
