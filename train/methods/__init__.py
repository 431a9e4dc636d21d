"""Training methods behind one interface (see ``base.Method``), reachable by name."""

from __future__ import annotations

from train.methods.base import Method, MethodConfig, MethodContext
from train.registry import Registry

_methods: Registry[type[Method]] = Registry("method")
register = _methods.register
available = _methods.available
get = _methods.get
register(Method)

# The built-in methods (imported here, after ``register`` exists, so each module stays engine-free).
from train.methods.bitat import BitatConfig, BitatMethod  # noqa: E402
from train.methods.qaf import QafConfig, QafMethod  # noqa: E402
from train.methods.quantnet import QuantNetConfig, QuantNetMethod  # noqa: E402
from train.methods.ste import SteConfig, SteMethod  # noqa: E402
from train.methods.uniq import UniqConfig, UniqMethod  # noqa: E402

register(SteMethod)
register(BitatMethod)
register(UniqMethod)
register(QuantNetMethod)
register(QafMethod)


__all__ = [
    "BitatConfig",
    "BitatMethod",
    "Method",
    "MethodConfig",
    "MethodContext",
    "QafConfig",
    "QafMethod",
    "QuantNetConfig",
    "QuantNetMethod",
    "SteConfig",
    "SteMethod",
    "UniqConfig",
    "UniqMethod",
    "available",
    "get",
    "register",
]
