"""The instruction-counting QEMU plugin on real cross-compiled programs whose marked regions differ by a
known number of instructions (runs of ``nop``), on aarch64 and on armv7 Thumb code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from runtime.emulation.counts import GETPPID, InsnCounts, plugin_args, read_counts
from runtime.emulation.plugin import ensure_plugin

pytestmark = [pytest.mark.qemu]

# Three address markers around 100 and 300 nops, then three getppid() markers around 50 and 150 nops.
# The marked function is several instructions long, so its block has a tail after the marker.
PROGRAM = r"""
#include <unistd.h>
__attribute__((noinline)) void bitat_mark(void) { __asm__ volatile("nop\n nop\n nop" ::: "memory"); }
int main(void) {
    bitat_mark();
    __asm__ volatile(".rept 100\n nop\n .endr");
    bitat_mark();
    __asm__ volatile(".rept 300\n nop\n .endr");
    bitat_mark();
    getppid();
    __asm__ volatile(".rept 50\n nop\n .endr");
    getppid();
    __asm__ volatile(".rept 150\n nop\n .endr");
    getppid();
    return 0;
}
"""

TARGETS = {  # arch: (compiler, flags, qemu, cpus to compare)
    "aarch64": ("aarch64-linux-gnu-gcc", [], "qemu-aarch64", ("cortex-a72", "cortex-a53")),
    "arm": ("arm-linux-gnueabihf-gcc", ["-mthumb"], "qemu-arm", ("cortex-a7", "cortex-a15")),
}


@pytest.fixture(scope="module")
def plugin() -> Path:
    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-user is not installed (apt-get install qemu-user)")
    return ensure_plugin()


def _program(arch: str, root: Path) -> tuple[Path, int]:
    compiler, flags, _, _ = TARGETS[arch]
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    (root / "marks.c").write_text(PROGRAM)
    exe = root / f"marks_{arch}"
    subprocess.run([compiler, "-O2", "-static", *flags, "-o", str(exe), str(root / "marks.c")], check=True, timeout=120)
    with exe.open("rb") as handle:
        symbol = ELFFile(handle).get_section_by_name(".symtab").get_symbol_by_name("bitat_mark")[0]
    return exe, symbol["st_value"]


def _count(plugin: Path, arch: str, cpu: str, exe: Path, out: Path, *qemu_args: str, **markers) -> InsnCounts:
    qemu = TARGETS[arch][2]
    subprocess.run([qemu, "-cpu", cpu, *qemu_args, *plugin_args(plugin, out, **markers), str(exe)], check=True,
                   timeout=120)
    return read_counts(out)


@pytest.mark.parametrize("arch", sorted(TARGETS))
def test_marked_regions_count_exactly_and_repeat(plugin: Path, arch: str, tmp_path: Path):
    exe, mark = _program(arch, tmp_path)
    if arch == "arm":
        assert mark & 1, "a Thumb function symbol is odd; the plugin ignores bit 0"
    cpu_a, cpu_b = TARGETS[arch][3]
    first = _count(plugin, arch, cpu_a, exe, tmp_path / "a.txt", marker=mark)
    again = _count(plugin, arch, cpu_a, exe, tmp_path / "b.txt", marker=mark)
    other_cpu = _count(plugin, arch, cpu_b, exe, tmp_path / "c.txt", marker=mark)
    # one instruction per translated block: the plugin's per-block counting must give the same figures,
    # including the first marker's (counted from the start, so a block's uncounted tail would show there)
    single = _count(plugin, arch, cpu_a, exe, tmp_path / "d.txt", "-singlestep", marker=mark)
    assert len(first.markers) == 3 and first.vcpus == 1
    assert first.markers[2] - first.markers[1] == 200  # the regions differ by 200 nops, nothing else
    assert first == again == other_cpu == single
    assert sum(first.markers) < first.total


@pytest.mark.parametrize("arch", sorted(TARGETS))
def test_syscall_markers_count_exactly(plugin: Path, arch: str, tmp_path: Path):
    exe, mark = _program(arch, tmp_path)
    counts = _count(plugin, arch, TARGETS[arch][3][0], exe, tmp_path / "s.txt", syscall=GETPPID[arch])
    assert len(counts.markers) == 3
    assert counts.markers[2] - counts.markers[1] == 100
    both = _count(plugin, arch, TARGETS[arch][3][0], exe, tmp_path / "t.txt", marker=mark, syscall=GETPPID[arch])
    assert len(both.markers) == 6 and both.total == counts.total


def test_total_only_without_markers(plugin: Path, tmp_path: Path):
    exe, _ = _program("aarch64", tmp_path)
    counts = _count(plugin, "aarch64", "cortex-a72", exe, tmp_path / "o.txt")
    assert counts.markers == () and counts.total > 1000


@pytest.mark.parametrize(("option", "message"), [
    ("bogus=1", "unknown option 'bogus=1'"),
    ("marker=zz", "marker=zz is not a hex address"),
    ("syscall=-3", "syscall=-3 is not a system call number"),
])
def test_bad_plugin_options_fail_with_one_line(plugin: Path, tmp_path: Path, option: str, message: str):
    exe, _ = _program("aarch64", tmp_path)
    done = subprocess.run(["qemu-aarch64", "-plugin", f"{plugin},out={tmp_path / 'x.txt'},{option}", str(exe)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and message in done.stderr


def test_unwritable_output_is_refused(plugin: Path, tmp_path: Path):
    exe, _ = _program("aarch64", tmp_path)
    done = subprocess.run(["qemu-aarch64", "-plugin", f"{plugin},out={tmp_path / 'missing' / 'x.txt'}", str(exe)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "cannot write" in done.stderr
