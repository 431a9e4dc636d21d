"""Damaged inputs: a truncated or bit-flipped .tflite or ELF file is one clean BenchError or a valid result,
never a traceback (the libraries behind runtime.tflite_ops and runtime.elf do not verify offsets); a
damaged bundle (manifest, flatbuffer, eval set) is refused by ``load_bundle`` in one line."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.elf import ElfInfo, read_elf
from runtime.errors import BenchError
from runtime.tflite_ops import operator_counts

SEED = 0


def damaged(data: bytes, truncations: int = 120, flips: int = 250) -> Iterator[bytes]:
    """Prefixes of ``data`` at the small offsets headers live in and at random lengths, then copies with
    1 to 8 random bytes overwritten."""
    rng = random.Random(SEED)
    lengths = set(range(0, 80, 3)) | {rng.randrange(len(data)) for _ in range(truncations)}
    for length in sorted(lengths):
        yield data[:length]
    for _ in range(flips):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            copy[rng.randrange(len(copy))] = rng.randrange(256)
        yield bytes(copy)


def check_all(original: Path, tmp_path: Path, read: Callable[[Path], object], result_type: type) -> Counter:
    outcomes: Counter = Counter()
    case = tmp_path / original.name
    for data in damaged(original.read_bytes()):
        case.write_bytes(data)
        try:
            result = read(case)
        except BenchError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(str(case)), message
            outcomes["error"] += 1
        else:
            assert isinstance(result, result_type)
            outcomes["read"] += 1
    return outcomes


@pytest.mark.parametrize("name", ["model.tflite", "model_int8.tflite"])
def test_damaged_flatbuffers(built_bundle, tmp_path: Path, name: str):
    outcomes = check_all(built_bundle[0] / name, tmp_path, operator_counts, Counter)
    assert outcomes["error"] > 100 and outcomes["read"] > 0  # every truncation is caught; most flips hit weights


def test_damaged_elf_programs(aarch64_program: Path, tmp_path: Path):
    outcomes = check_all(aarch64_program, tmp_path, read_elf, ElfInfo)
    assert outcomes["error"] > 100 and outcomes["read"] > 0
    host = Path(shutil.which("ls") or "/bin/ls")
    outcomes = check_all(host, tmp_path, read_elf, ElfInfo)
    assert outcomes["error"] > 100 and outcomes["read"] > 0


@pytest.mark.parametrize("name", ["manifest.json", "model.tflite", "eval.npz"])
def test_damaged_bundle_files_are_refused_in_one_line(bundle_copy: Path, tmp_path: Path, monkeypatch, name: str):
    from fuzzing import Outcomes, flips, stray_files, truncations

    from runtime.bundle import load_bundle

    monkeypatch.chdir(tmp_path)
    target = bundle_copy / name
    good = target.read_bytes()
    before = {p for p in bundle_copy.rglob("*") if p.is_file()}
    outcomes = Outcomes(f"runtime: bundle {name} truncated ({min(len(good), 400)} offsets), bytes flipped", BenchError)
    for data in [*truncations(good, limit=400), *flips(good, 200)]:
        target.write_bytes(data)
        outcomes.run(lambda: load_bundle(bundle_copy), str(target))
    assert not outcomes.record(stray_files(tmp_path, before))["stray files"]
    assert outcomes.counts["refused"] >= min(len(good), 400) - 1
