"""``bench.py doctor``: check a target before measuring it (reachable, architecture, 64-bit OS,
glibc vs the binary's needs, the binary starts, Python for interpreter engines, the native C engine, LCE op
coverage)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bitat_edge.layout import BundleDir
from runtime.bundle import load_bundle
from runtime.devices import Device
from runtime.elf import format_version, normalize_arch, parse_version, read_elf
from runtime.emulation.plugin import built_plugin
from runtime.emulation.sysroot import NO_LITERT, built_sysroot
from runtime.engines.base import Stager
from runtime.engines.benchmark_binary import find_binary
from runtime.engines.native import build_target
from runtime.errors import BenchError
from runtime.mcu import footprint
from runtime.native import build
from runtime.tflite_ops import LCE_CUSTOM_OPS, operator_counts

_PY_CHECK = ("import importlib.util, sys; import numpy; "
             "sys.exit(0 if importlib.util.find_spec('larq_compute_engine') else 3)")


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    status: str  # ok | warn | fail
    detail: str

    def __str__(self) -> str:
        return f"[{self.status:^4}] {self.name}: {self.detail}"


def run_doctor(device: Device, bundle_path: str | None = None, binary: str | None = None) -> list[Check]:
    """Run every check that applies to ``device``; stop early only when the target is unreachable."""
    checks: list[Check] = []
    transport = device.open_transport()
    try:
        try:
            facts = transport.facts()
        except BenchError as exc:
            return [Check("reachable", "fail", str(exc))]
        checks.append(Check("reachable", "ok", f"{transport.label}: {facts.os or facts.kernel} ({facts.cpu})"))
        if device.board:
            return checks + _board_checks(device, facts.machine, Path(transport.workdir()), bundle_path)
        machine = normalize_arch(facts.machine)
        if machine == device.arch:
            checks.append(Check("architecture", "ok", f"{facts.machine} matches profile '{device.name}'"))
        else:
            checks.append(Check("architecture", "fail",
                                f"target reports {facts.machine or 'nothing'}, profile '{device.name}' expects "
                                f"{device.arch}; pick the profile that matches the board (e.g. rpi3 for armv7)"))
        if facts.long_bit == 64:
            checks.append(Check("64-bit OS", "ok", "64-bit userland"))
        else:
            status = "fail" if device.arch == "aarch64" else "warn"
            checks.append(Check("64-bit OS", status,
                                f"{facts.long_bit or 'unknown'}-bit userland; LCE's optimized kernels need a 64-bit OS "
                                "(install 64-bit Raspberry Pi OS Bookworm or newer)"))
        stager = Stager(transport)
        python = device.interpreter_python
        try:
            path = find_binary(device.binary, binary, device.binary_path, device.docker_target)
        except BenchError as exc:
            checks.append(Check("benchmark binary", "warn" if python else "fail",
                                f"{exc}" + ("; interpreter engines can still measure" if python else "")))
            path = None
        if path is not None:
            checks.extend(_binary_checks(path, device, facts.glibc, stager))
        if transport.capabilities.emulated:
            checks.extend(_emulation_checks(device.arch))
        elif python is not None:
            done = transport.run([python, "-c", _PY_CHECK], timeout=60)
            if done.returncode == 0:
                checks.append(Check("python", "ok", f"{python} has numpy and larq-compute-engine (interpreter engines)"))
            else:
                checks.append(Check("python", "warn",
                                    f"{python} lacks numpy or larq-compute-engine; interpreter engines will not run "
                                    "there (the benchmark binary does not need Python)"))
        checks.extend(_native_checks(device, stager, bundle_path))
        if bundle_path:
            checks.append(_coverage(bundle_path))
    finally:
        transport.close()
    return checks


def _board_checks(device: Device, machine: str, workdir: Path, bundle_path: str | None) -> list[Check]:
    """A microcontroller board: its instruction set, the cross compiler, the counting plugin, and whether the
    bundle's engine blob builds and fits the board (the linker's answer)."""
    from runtime.mcu import project, toolchain
    from runtime.mcu.boards import get_board
    from runtime.mcu.evaluate import build_firmware

    board = get_board(device.board)
    checks = [Check("architecture", "ok" if machine == device.arch else "fail",
                    f"board {board.name} is {machine}, profile '{device.name}' says {device.arch}")]
    try:
        checks.append(Check("cross compiler", "ok", toolchain.require_toolchain()))
    except BenchError as exc:
        return checks + [Check("cross compiler", "fail", str(exc))]
    try:
        from runtime.emulation.plugin import ensure_plugin

        checks.append(Check("instruction counting", "ok", f"QEMU plugin {ensure_plugin()}"))
    except (ImportError, BenchError) as exc:
        checks.append(Check("instruction counting", "fail", f"the QEMU counting plugin is not available ({exc})"))
    if bundle_path:
        bundle = load_bundle(bundle_path, kinds=("lce",))
        blob_path = BundleDir(bundle.root).mcu_blob
        if not blob_path.is_file():
            return checks + [Check("engine blob", "fail", f"{blob_path} is missing; re-run the convert stage"),
                             _coverage(bundle_path)]
        blob = blob_path.read_bytes()
        config = project.model_config(blob, list(bundle.manifest.deploy.input_shape), len(bundle.manifest.classes))
        try:
            firmware = build_firmware(board, blob, config, workdir / "doctor", stack_bytes=8192)
            fp = footprint.read_map(firmware.map)
            checks.append(Check("fits the board", "ok", f"flash {fp.flash:,} of {board.flash.size:,} bytes, arena "
                                f"{fp.arena:,} + other {fp.data_bss:,} of {board.ram.size:,} bytes of {board.ram.name}"))
        except BenchError as exc:
            checks.append(Check("fits the board", "fail", str(exc)))
        checks.append(_coverage(bundle_path))
    return checks


def _binary_checks(path: Path, device: Device, glibc: str, stager: Stager) -> list[Check]:
    info = read_elf(path)
    checks = []
    if info.machine != device.arch:
        return [Check("binary architecture", "fail",
                      f"{path.name} is built for {info.machine}, the target is {device.arch}; use "
                      f"lce_benchmark_model_{device.binary or device.arch} (make docker-lce-{device.docker_target or '...'})")]
    checks.append(Check("binary architecture", "ok", f"{path.name}: {info.machine}, {info.bits}-bit, "
                        f"{'dynamically' if info.dynamic else 'statically'} linked"))
    need, have = info.glibc_required, parse_version(glibc) if glibc else None
    if stager.transport.capabilities.libc != "glibc" or not info.dynamic:
        checks.append(Check("glibc", "ok", "not needed (Android bionic or static binary)"))
    elif have is None:
        checks.append(Check("glibc", "warn", f"binary needs GLIBC_{format_version(need)}; target glibc unknown"))
    elif need is not None and need > have:
        checks.append(Check("glibc", "fail",
                            f"binary needs GLIBC_{format_version(need)} but the target has {glibc}; upgrade the OS "
                            "(64-bit Raspberry Pi OS Bookworm has 2.36) or build the binary natively with CMake"))
    else:
        checks.append(Check("glibc", "ok", f"binary needs GLIBC_{format_version(need)}, target has {glibc}"))
    try:
        remote = stager.file(path, executable=True)
        done = stager.transport.run([remote, "--help"], timeout=120)
    except BenchError as exc:
        checks.append(Check("binary starts", "fail", str(exc)))
        return checks
    if "--graph" in done.output or "graph" in done.output:
        checks.append(Check("binary starts", "ok", f"`{path.name} --help` answered in {done.seconds:.1f} s"))
    else:
        tail = done.output.strip().splitlines()[-1:] or ["no output"]
        checks.append(Check("binary starts", "fail", f"`{path.name} --help` exited {done.returncode}: {tail[0]}"))
    return checks


def _emulation_checks(arch: str) -> list[Check]:
    """The instruction counter and the emulation sysroot's Python (LiteRT): built, or built on first use."""
    later = "the first measurement builds it, or run `python -m runtime.emulation setup` now"
    try:
        plugin = built_plugin()
    except BenchError as exc:
        return [Check("instruction counter", "fail", str(exc))]
    checks = [Check("instruction counter", "ok", f"QEMU plugin {plugin}") if plugin else
              Check("instruction counter", "warn", f"QEMU plugin not built yet ({later})")]
    if arch in NO_LITERT:
        checks.append(Check("python", "warn", f"{NO_LITERT[arch]}; the LCE model runs with a binary engine"))
        return checks
    sysroot = built_sysroot(arch)
    if sysroot is None:
        checks.append(Check("python", "warn", f"the {arch} Python + LiteRT sysroot is not assembled yet "
                                              f"(about 45 MB of downloads; {later})"))
    else:
        facts = sysroot.facts()
        checks.append(Check("python", "ok", f"{arch} Python {facts['python']}, numpy {facts['numpy']}, "
                                            f"{', '.join(facts['wheels'])} in {sysroot.root} (LiteRT: TFLite baselines)"))
    return checks


def _native_checks(device: Device, stager: Stager, bundle_path: str | None) -> list[Check]:
    """The C engine (``--engine native``): its program builds for the device and starts there; the bundle has
    its compiled model."""
    target = build_target(device.arch)
    if target is None:
        return [Check("native engine", "warn", f"no build target for arch '{device.arch}'")]
    try:
        program = build.program("bench", target)
        done = stager.transport.run([stager.file(program, executable=True)], timeout=120)
    except (build.BuildError, BenchError) as exc:
        return [Check("native engine", "warn", f"{exc}; the other engines can still measure")]
    if "usage: bitat_bench" not in done.stderr:
        tail = done.output.strip().splitlines()[-1:] or ["no output"]
        return [Check("native engine", "fail", f"bitat_bench ({target}) does not start: {tail[0]}")]
    checks = [Check("native engine", "ok", f"bitat_bench built for {target} starts on the target")]
    if bundle_path:
        blob = BundleDir(load_bundle(bundle_path, kinds=("lce",)).root).blob
        checks.append(Check("native model", "ok", f"{blob.name} present") if blob.is_file() else
                      Check("native model", "warn", f"{blob.name} missing: re-run the convert stage for --engine native"))
    return checks


def _coverage(bundle_path: str) -> Check:
    bundle = load_bundle(bundle_path, kinds=("lce",))
    counts = operator_counts(bundle.models["lce"].path)
    custom = {name: n for name, n in counts.items() if not name.startswith("builtin:")}
    unknown = sorted(set(custom) - LCE_CUSTOM_OPS)
    listed = ", ".join(f"{name}×{n}" for name, n in sorted(custom.items())) or "none"
    if unknown:
        return Check("LCE op coverage", "fail",
                     f"{bundle.models['lce'].path.name} uses custom ops {', '.join(unknown)} that LCE does not "
                     "register; re-convert with the supported op set")
    if not custom:
        return Check("LCE op coverage", "warn", "the LCE model has no LCE ops (nothing was binarized)")
    return Check("LCE op coverage", "ok", f"{listed}: all registered by LCE's interpreter and lce_benchmark_model")
