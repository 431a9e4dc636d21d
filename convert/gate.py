"""The parity gate: what the converted models must reach against the reference before a bundle is written.

Gated are the models as the runtime runs them (``convert.engines.ENGINES``: LCE, and the TFLite baselines
with the interpreter's default delegate) and, when the reference is PyTorch, ONNX Runtime (the export
itself). The runs without the default delegate are reported, not gated. Any non-finite logit fails. The
agreement thresholds left unset take the defaults of the graph: a plain one, or one with integer grids
(QDQ pairs, ``Graph.has_qdq``), whose integer model holds the grids and whose float models round at them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from convert.engines import ENGINES

DEFAULT_MIN_AGREEMENT = 0.999
"""Top-1 agreement of LCE / fp32 TFLite / ONNX Runtime with the reference. A binary net may flip a few
images whose pre-sign value is within float rounding of 0; weights only within LCE's +/-scale tolerance
(snapped by LCE) cost ~2 %, broken inputs far more."""
DEFAULT_MIN_INT8_AGREEMENT = 0.5
"""Top-1 agreement of the int8 baseline. Post-training quantization moves close decisions: 70 % on the
random-weight nets of the tests, more on trained ones; a broken int8 conversion agrees at chance level."""
GRID_MIN_AGREEMENT = 0.995
"""Top-1 agreement of LCE / fp32 TFLite / ONNX Runtime on a graph with integer grids. Each quantize point
rounds at half steps, and a value within float rounding of one moves a whole step in another engine's
float arithmetic: UniQ W2A2 measured 99.88 %."""
GRID_MIN_INT8_AGREEMENT = 0.99
"""Top-1 agreement of the integer model of a graph with integer grids: it holds the grids exactly (the
int16x8 form), so it must agree like a deployment: measured 99.57 % (UniQ W2A2) to 99.99 % (QAF)."""


@dataclass(frozen=True)
class ParityGate:
    """Thresholds (fractions, absolute logits); an agreement threshold None: the graph's default
    (``for_graph``); ``max_logit_error`` None: not checked."""

    min_agreement: float | None = None
    min_int8_agreement: float | None = None
    max_logit_error: float | None = None

    def for_graph(self, grids: bool) -> ParityGate:
        """This gate with each unset agreement threshold at its default for a plain graph or, ``grids``, a
        graph with integer grids."""
        agreement, int8 = (GRID_MIN_AGREEMENT, GRID_MIN_INT8_AGREEMENT) if grids else (
            DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_INT8_AGREEMENT)
        return replace(self, min_agreement=agreement if self.min_agreement is None else self.min_agreement,
                       min_int8_agreement=int8 if self.min_int8_agreement is None else self.min_int8_agreement)

    def failures(self, parity: dict[str, Any]) -> list[str]:
        """Each threshold an engine misses, as a phrase (empty: the gate passes); unset agreement thresholds
        are a plain graph's."""
        if self.min_agreement is None or self.min_int8_agreement is None:
            return self.for_graph(grids=False).failures(parity)
        engines, reference = parity["engines"], parity["reference"]
        gated = [ENGINES[kind][0] for kind in ENGINES] + (["onnxruntime"] if reference == "pytorch" else [])
        found = []
        for name in gated:
            entry = engines[name]
            int8 = name == ENGINES["int8"][0]
            least = self.min_int8_agreement if int8 else self.min_agreement
            if entry.get("nonfinite_images", 0):
                found.append(f"{name} gives NaN or infinite logits on {entry['nonfinite_images']} images")
            elif entry["agreement"] < least:
                found.append(f"{name} agrees with {reference} on {100 * entry['agreement']:.2f} % of images "
                             f"(at least {100 * least:.2f} % required)")
            error = entry["max_abs_logit_diff"]
            if not int8 and self.max_logit_error is not None and not error <= self.max_logit_error:
                found.append(f"{name}'s max |logit diff| is {error:.3g} (at most {self.max_logit_error:.3g} allowed)")
        return found

    def verdict(self, parity: dict[str, Any]) -> dict[str, Any]:
        """The report's ``gate`` section: the thresholds (unset ones a plain graph's), whether they were met,
        and what failed."""
        gate = self.for_graph(grids=False)
        failures = gate.failures(parity)
        return {**asdict(gate), "passed": not failures, "failures": failures}
