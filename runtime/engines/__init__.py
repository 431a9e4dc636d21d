"""Engines by name (``--engine``). Adding one: an ``Engine`` subclass listed in ``ENGINES``."""

from __future__ import annotations

from runtime.engines.base import Engine
from runtime.engines.benchmark_binary import BenchmarkBinaryEngine
from runtime.engines.interpreter import LceInterpreterEngine, TfliteInterpreterEngine
from runtime.engines.mcu import McuEngine
from runtime.engines.native import NativeEngine

ENGINES: dict[str, type[Engine]] = {
    cls.name: cls for cls in (LceInterpreterEngine, TfliteInterpreterEngine, BenchmarkBinaryEngine, NativeEngine, McuEngine)
}
