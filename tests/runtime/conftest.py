"""Shared fixtures for runtime tests: one tiny real bundle and one aarch64 program per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from factories import compile_aarch64, shared_bundle


@pytest.fixture(scope="session")
def built_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return shared_bundle(tmp_path_factory)


@pytest.fixture
def bundle_copy(built_bundle, tmp_path: Path) -> Path:
    """A private copy (tests that corrupt files or write results get their own run directory)."""
    target = tmp_path / "run" / "deploy"
    shutil.copytree(built_bundle[0], target)
    return target



@pytest.fixture(scope="session")
def aarch64_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real aarch64 Linux executable, cross-compiled in the test session."""
    return compile_aarch64(tmp_path_factory.mktemp("aarch64"))
