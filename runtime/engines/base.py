"""The engine interface: measure one model file of a session request on one transport."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from bitat_edge.bench_record import Measurement
from runtime.bundle import ModelFile
from runtime.request import SessionRequest
from runtime.transports.base import Transport


class Stager:
    """Pushes each local file to the transport's working directory once per session."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._pushed: dict[tuple[str, bool], str] = {}

    def file(self, local: Path, executable: bool = False, name: str | None = None) -> str:
        key = (str(local.resolve()), executable)
        if key not in self._pushed:
            remote = f"{self.transport.workdir()}/{name or local.name}"
            self.transport.push(str(local), remote, executable=executable)
            self._pushed[key] = remote
        return self._pushed[key]


Log = Callable[[str], None]


def measured(model: ModelFile, **fields: Any) -> Measurement:
    """A ``Measurement`` of ``model`` (its file facts filled in) with the engine's ``fields``."""
    return Measurement(model=model.kind, file=model.path.name, model_sha256=model.sha256,
                       model_bytes=model.size_bytes, **fields)


class Engine(ABC):
    """A way to run a model: an interpreter in Python, or the benchmark binary.

    Adding an engine: subclass, set ``name`` and ``registered_ops``, implement ``create`` and
    ``measure``, and list the class in ``runtime.engines.ENGINES``.
    """

    name: ClassVar[str]
    registered_ops: ClassVar[frozenset[str]] = frozenset()  # custom ops this engine can run

    @classmethod
    @abstractmethod
    def create(cls, request: SessionRequest) -> Engine:
        """The engine for ``request.device``; ``BenchError`` when it cannot run there (e.g. no binary)."""

    @abstractmethod
    def measure(self, stager: Stager, request: SessionRequest, model: ModelFile, log: Log) -> Measurement:
        """Run the request's protocol for ``model`` on ``stager.transport``."""
