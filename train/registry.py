"""Classes reachable by name (quantizers, methods): one registry type, clear errors for unknown,
nameless and duplicate names."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class _Named(Protocol):
    name: str


T = TypeVar("T", bound=type[_Named])


class Registry(Generic[T]):
    """Maps each registered class's ``name`` attribute to the class; ``kind`` names them in errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Class decorator: make ``cls`` reachable by ``cls.name``."""
        if not cls.name:
            raise ValueError(f"{self.kind} class {cls.__qualname__} has no name; set the class attribute 'name'")
        if cls.name in self._classes:
            raise ValueError(f"{self.kind} name {cls.name!r} is already registered "
                             f"(by {self._classes[cls.name].__qualname__})")
        self._classes[cls.name] = cls
        return cls

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str) -> T:
        """The class registered under ``name``."""
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}") from None
