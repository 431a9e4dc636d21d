"""Seeded damage for the robustness tests: byte flips, truncations and protobuf field mutations, and the
bookkeeping that proves a reader never raised a traceback and never wrote a file.

``Outcomes`` counts how a reader took each damaged input (read it, or refused it with one line);
anything else propagates and fails the test. Every test that fuzzes records its counts in ``COUNTS``,
which ``tests/conftest.py`` prints at the end of the run (the "fuzz" section of the test log).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

SEED = 0
COUNTS: dict[str, Counter] = {}
"""Per fuzz target: how many inputs were read, refused, and the tracebacks and stray files (always 0)."""


def flips(data: bytes, count: int, seed: int = SEED) -> Iterator[bytes]:
    """``count`` copies of ``data`` with 1 to 8 random bytes overwritten."""
    rng = random.Random(seed)
    for _ in range(count):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            copy[rng.randrange(len(copy))] = rng.randrange(256)
        yield bytes(copy)


def truncations(data: bytes, limit: int | None = None, seed: int = SEED) -> Iterator[bytes]:
    """``data`` cut at every offset (the empty file included), or at ``limit`` offsets: every one of the first
    64 bytes (where headers live) and the rest drawn at random."""
    offsets = list(range(len(data)))
    if limit is not None and limit < len(offsets):
        rng = random.Random(seed)
        offsets = offsets[:64] + sorted(rng.sample(offsets[64:], limit - 64))
    for offset in offsets:
        yield data[:offset]


def _fields(message: Message) -> list[tuple[Message, FieldDescriptor, int | None]]:
    """Every set field in the message tree: (owner, field, index in a repeated field or None)."""
    found = []
    for descriptor, value in message.ListFields():
        if descriptor.label == FieldDescriptor.LABEL_REPEATED:
            for i, item in enumerate(value):
                found.append((message, descriptor, i))
                if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
                    found += _fields(item)
        else:
            found.append((message, descriptor, None))
            if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
                found += _fields(value)
    return found


def _random_value(descriptor: FieldDescriptor, rng: random.Random, names: list[str]) -> object:
    kind = descriptor.type
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return rng.choice([0.0, -1.0, 1e30, float("nan"), rng.uniform(-10, 10)])
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_STRING:
        return rng.choice([*names, "", "x", "\u00e9\u00e8", "Conv", "Pad", "Where", "ai.onnx.ml"])
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randrange(0, 9))
    if kind == FieldDescriptor.TYPE_ENUM:
        return rng.choice(descriptor.enum_type.values).number
    unsigned = kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED32,
                        FieldDescriptor.TYPE_FIXED64)
    return rng.choice([0, 1, 2, 3, 7, 2**31 - 1] + ([] if unsigned else [-1, -7]))


def mutate_message(message: Message, rng: random.Random, names: list[str]) -> str:
    """Remove or change one random field of ``message`` in place; return what was done."""
    owner, descriptor, index = rng.choice(_fields(message))
    if rng.random() < 0.5 or descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        if index is None:
            owner.ClearField(descriptor.name)
        else:
            del getattr(owner, descriptor.name)[index]
        return f"removed {owner.DESCRIPTOR.name}.{descriptor.name}"
    value = _random_value(descriptor, rng, names)
    if index is None:
        setattr(owner, descriptor.name, value)
    else:
        getattr(owner, descriptor.name)[index] = value
    return f"set {owner.DESCRIPTOR.name}.{descriptor.name}"


@dataclass
class Outcomes:
    """How a reader took each damaged input. ``expect`` is the error type a refusal must have."""

    name: str
    expect: type[Exception] | tuple[type[Exception], ...]
    counts: Counter = field(default_factory=Counter)

    def run(self, read: Callable[[], object], source: str | None = None) -> None:
        """Call ``read``; a refusal must be ``expect`` with a one-line message (naming ``source`` when given)."""
        try:
            read()
        except self.expect as exc:
            message = str(exc)
            assert message and "\n" not in message, f"{self.name}: multi-line or empty error {message!r}"
            assert source is None or source in message, f"{self.name}: the error does not name {source}: {message}"
            self.counts["refused"] += 1
        else:
            self.counts["read"] += 1

    def record(self, written: list[str]) -> Counter:
        """Store the counts with the stray files found (the caller asserts there are none)."""
        self.counts["stray files"] += len(written)
        self.counts["tracebacks"] += 0
        COUNTS[self.name] = self.counts
        return self.counts


def stray_files(root: Path, allowed: set[Path]) -> list[str]:
    """Files under ``root`` other than ``allowed``."""
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p not in allowed)
