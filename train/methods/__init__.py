"""Training methods behind one interface (see ``base.Method``), reachable by name."""

from __future__ import annotations

from train.methods.base import Method, MethodConfig, MethodContext

_REGISTRY: dict[str, type[Method]] = {"float": Method}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method reachable by ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"method name {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """The names of all registered methods."""
    return sorted(_REGISTRY)


def get(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}") from None


# The built-in methods (imported here, after ``register`` exists, so each module stays engine-free).
from train.methods.bitat import BitatConfig, BitatMethod  # noqa: E402
from train.methods.ste import SteConfig, SteMethod  # noqa: E402

register(SteMethod)
register(BitatMethod)


__all__ = [
    "BitatConfig",
    "BitatMethod",
    "Method",
    "MethodConfig",
    "MethodContext",
    "SteConfig",
    "SteMethod",
    "available",
    "get",
    "register",
]
