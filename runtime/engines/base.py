"""The engine interface: measure one model file on one transport under one protocol."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.bundle import Bundle, ModelFile
from runtime.protocol import Protocol
from runtime.transports.base import Transport


@dataclass
class Job:
    """One measurement: which model, under which protocol, with or without accuracy and per-layer profile."""

    bundle: Bundle
    model: ModelFile
    protocol: Protocol
    accuracy: bool = True
    eval_samples: int | None = None
    profile: bool = False
    timeout: float = 900.0


@dataclass
class EngineResult:
    """What an engine measured; ``latency`` comes from ``runtime.protocol``."""

    engine: str
    engine_version: str
    backend: str
    latency: dict[str, Any]
    peak_memory_mb: float | None = None
    peak_memory_source: str = ""
    accuracy: dict[str, Any] | None = None
    profile: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)


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


class Engine(ABC):
    """A way to run a model: an interpreter in Python, or the benchmark binary."""

    name: str = ""
    registered_ops: frozenset[str] = frozenset()  # custom ops this engine can run

    @abstractmethod
    def measure(self, stager: Stager, job: Job, log: Log) -> EngineResult:
        """Run the protocol for ``job`` on ``stager.transport``."""
