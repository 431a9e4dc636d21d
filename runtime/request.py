"""What one bench session is asked to do: one typed request, built by ``bench.py`` or a benchmark script."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bitat_edge.layout import MODEL_KINDS
from runtime.bundle import Bundle
from runtime.devices import Device
from runtime.protocol import Protocol


@dataclass(frozen=True)
class SessionRequest:
    """Measure ``kinds`` of ``bundle`` on ``device`` under ``protocol``; engines read what they need here."""

    device: Device
    bundle: Bundle
    protocol: Protocol
    kinds: tuple[str, ...] = MODEL_KINDS
    engine: str = "auto"  # "auto" or a name in runtime.engines.ENGINES
    accuracy: bool = True  # top-1 on the bundle's eval set (interpreter engines)
    eval_samples: int | None = None  # only the first N eval samples
    profile: bool = False  # per-op times where the engine has a profiler
    binary: str | None = None  # --binary: the benchmark binary for the target
    bench_root: Path | None = None  # sessions go to <bench_root>/<device>-<stamp>/
    timeout: float = 900.0  # seconds allowed per command on the target
    count_images: int = 3  # EMULATED targets: eval images whose invokes are counted (instructions, not time)

    @property
    def results_root(self) -> Path:
        """Where sessions and the aggregated results go (default ``<run>/bench``)."""
        return self.bench_root or self.bundle.run_dir / "bench"
