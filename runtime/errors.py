"""The one error type the harness shows to users as a plain sentence (no traceback)."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing failure: names the input, what was wrong and what to do."""


class TransportTimeout(BenchError):
    """A command on the target ran past its timeout and was stopped."""
