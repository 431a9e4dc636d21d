"""A module, or one of its attributes, imported on first use.

``convert.lowering`` declares the op set (``bitat-edge convert ops``, ``SUPPORTED_OPS``) beside handlers
that build TensorFlow/Larq layers; with its TensorFlow, Larq and Keras-layer names deferred, listing the
op set never imports TensorFlow (seconds, and its C++ start-up chatter). The first handler that runs
imports them.
"""

from __future__ import annotations

import importlib
from typing import Any


class Deferred:
    """Stands for ``module`` (or ``module.attr``): attribute access and calls import it first."""

    def __init__(self, module: str, attr: str = "") -> None:
        self._module, self._attr = module, attr

    def _target(self) -> Any:
        found = importlib.import_module(self._module)
        return getattr(found, self._attr) if self._attr else found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Deferred({'.'.join(filter(None, (self._module, self._attr)))})"
