"""Static memory plan: place every run-time buffer of a model at a fixed arena offset by lifetime.

A buffer lives from the op that writes it (``first``) to the last op that reads it (``last``, both
inclusive, in execution order). Two buffers may share bytes only when their lifetimes do not
overlap. Placement is greedy by size (largest first, each at the lowest offset that fits), the
strategy TFLite's arena planner also uses; it is not optimal, but close on chain-like graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGNMENT = 16
"""Every offset is a multiple of this (a 128-bit NEON vector)."""


@dataclass(frozen=True)
class Buffer:
    """One run-time buffer: ``size`` bytes alive from op ``first`` to op ``last`` (inclusive)."""

    key: int
    size: int
    first: int
    last: int


def _align(value: int) -> int:
    return (value + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def plan(buffers: list[Buffer]) -> tuple[dict[int, int], int]:
    """Offsets by buffer key, and the arena size they need (a multiple of ``ALIGNMENT``)."""
    placed: list[tuple[int, Buffer]] = []
    offsets: dict[int, int] = {}
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.key)):
        live = sorted(((off, other) for off, other in placed if other.first <= buf.last and buf.first <= other.last),
                      key=lambda item: item[0])
        offset = 0
        for off, other in live:  # slide past every live buffer that the candidate range hits
            if off < offset + _align(buf.size) and offset < off + _align(other.size):
                offset = _align(off + other.size)
        offsets[buf.key] = offset
        placed.append((offset, buf))
    total = max((off + _align(b.size) for off, b in placed), default=0)
    return offsets, total
