"""The parity gate: what the converted models must reach against the reference before a bundle is written.

Gated are the models as the runtime runs them (``convert.engines.ENGINES``: LCE, and the TFLite baselines
with the interpreter's default delegate) and, when the reference is PyTorch, ONNX Runtime (the export
itself). The runs without the default delegate are reported, not gated. Any non-finite logit fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from convert.engines import ENGINES

DEFAULT_MIN_AGREEMENT = 0.999
"""Top-1 agreement of LCE / fp32 TFLite / ONNX Runtime with the reference. A binary net may flip a few
images whose pre-sign value is within float rounding of 0; weights only within LCE's +/-scale tolerance
(snapped by LCE) cost ~2 %, broken inputs far more."""
DEFAULT_MIN_INT8_AGREEMENT = 0.5
"""Top-1 agreement of the int8 baseline. Post-training quantization moves close decisions: 70 % on the
random-weight nets of the tests, more on trained ones; a broken int8 conversion agrees at chance level."""


@dataclass(frozen=True)
class ParityGate:
    """Thresholds (fractions, absolute logits); ``max_logit_error`` None: not checked."""

    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_int8_agreement: float = DEFAULT_MIN_INT8_AGREEMENT
    max_logit_error: float | None = None

    def failures(self, parity: dict[str, Any]) -> list[str]:
        """Each threshold an engine misses, as a phrase (empty: the gate passes)."""
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
        """The report's ``gate`` section: the thresholds, whether they were met, and what failed."""
        failures = self.failures(parity)
        return {**asdict(self), "passed": not failures, "failures": failures}
