"""The error types the harness shows to users as a plain sentence (no traceback)."""

from __future__ import annotations

from bitat_edge.schema import SchemaError


class BenchError(Exception):
    """A user-facing failure: names the input, what was wrong and what to do."""


class TransportTimeout(BenchError):
    """A command on the target ran past its timeout and was stopped."""


class ConfigFileError(BenchError, SchemaError):
    """A device profile, inventory or other file the harness reads does not fit its schema."""
