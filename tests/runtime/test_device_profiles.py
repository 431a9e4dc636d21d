"""Device profiles, the user inventory and their messages."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from runtime.devices import inventory_path, load_profiles, resolve_device
from runtime.elf import normalize_arch
from runtime.errors import BenchError
from runtime.transports import parse_spec


def test_shipped_profiles_cover_the_required_devices():
    profiles = load_profiles()
    assert {"host", "rpi4", "rpi3", "android", "qemu-aarch64", "qemu-armv7"} <= set(profiles)
    assert profiles["rpi4"].arch == "aarch64" and profiles["rpi4"].threads == 4
    assert profiles["rpi3"].arch == "arm"
    assert profiles["qemu-aarch64"].qemu.to_dict() == {"binary": "qemu-aarch64", "cpu": "cortex-a72",
                                                        "sysroot": "/usr/aarch64-linux-gnu"}


def test_host_resolves_to_this_machine():
    device = resolve_device("host", None)
    assert device.transport.kind == "local" and device.arch == normalize_arch(platform.machine())
    assert not device.emulated and resolve_device("qemu-aarch64", None).emulated


def test_unknown_device_lists_known_ones():
    with pytest.raises(BenchError, match=r"device 'rpi5': unknown; known devices: android, host, .*rpi4"):
        resolve_device("rpi5", None)


def test_rpi4_without_address_shows_inventory_snippet_and_qemu_hint():
    with pytest.raises(BenchError) as err:
        resolve_device("rpi4", None)
    text = str(err.value)
    assert "devices:\n  rpi4:\n    transport: ssh://pi@<address>:22" in text
    assert "--device qemu-aarch64" in text


def test_inventory_fills_address_and_like_defines_new_names(tmp_path: Path):
    inv = tmp_path / "devices.yaml"
    inv.write_text("devices:\n  rpi4:\n    transport: ssh://pi@10.0.0.7:2222\n    key: ~/.ssh/pi\n"
                   "  bench-pi:\n    like: rpi4\n    transport: ssh://ci@pi.lan\n    threads: 2\n    python: python3\n")
    rpi4 = resolve_device("rpi4", inv)
    assert (rpi4.transport.host, rpi4.transport.port, rpi4.transport.user) == ("10.0.0.7", 2222, "pi")
    assert rpi4.key == "~/.ssh/pi" and rpi4.threads == 4 and rpi4.binary == "aarch64"
    pi = resolve_device("bench-pi", inv)
    assert pi.arch == "aarch64" and pi.threads == 2 and pi.python == "python3" and pi.transport.port == 22
    assert resolve_device("rpi4", inv, transport="ssh://x@y").transport.host == "y"  # --transport wins


def test_inventory_errors_name_file_and_key(tmp_path: Path):
    bad = tmp_path / "inv.yaml"
    bad.write_text("devices:\n  rpi4:\n    adress: 10.0.0.1\n")
    with pytest.raises(BenchError, match=r"inv.yaml \(device 'rpi4'\): unknown field 'adress'; valid keys in the top level: "
                                         r"binary_path, connect_timeout, .*, transport$"):
        resolve_device("rpi4", bad)
    bad.write_text("rpi4: {transport: ssh://a@b}\n")
    with pytest.raises(BenchError, match=r"unknown field 'rpi4'; valid keys in the top level: devices"):
        resolve_device("rpi4", bad)
    bad.write_text("devices:\n  rpi4:\n    threads: four\n")
    with pytest.raises(BenchError, match=r"inv.yaml \(device 'rpi4'\): field 'threads' must be empty or an integer > 0, got"):
        resolve_device("rpi4", bad)
    bad.write_text("devices: [\n")
    with pytest.raises(BenchError, match="not valid YAML"):
        resolve_device("rpi4", bad)
    with pytest.raises(BenchError, match="file not found"):
        resolve_device("rpi4", tmp_path / "missing.yaml")


def test_profile_errors_name_file_device_and_field(tmp_path: Path):
    profiles = tmp_path / "devices.yaml"
    profiles.write_text("pi:\n  arch: aarch64\n  transport: ssh\n  qemu: {binary: qemu-aarch64, cpu: a72}\n")
    with pytest.raises(BenchError, match=r"devices.yaml \(device 'pi'\): field 'qemu.sysroot' is missing"):
        load_profiles(profiles)
    profiles.write_text("pi:\n  arch: aarch64\n  transport: ssh\n  thread: 4\n")
    with pytest.raises(BenchError, match=r"unknown field 'thread'; valid keys in the top level: arch, binary, board, cpu, "):
        load_profiles(profiles)
    profiles.write_text("pi:\n  arch: aarch64\n  transport: telnet\n")
    with pytest.raises(BenchError, match="transport 'telnet': unknown; use local, qemu, qemu-system, ssh://user@host"):
        resolve_device("pi", profiles=load_profiles(profiles))


def test_inventory_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BITAT_EDGE_INVENTORY", str(tmp_path / "env.yaml"))
    assert inventory_path(str(tmp_path / "cli.yaml")) == tmp_path / "cli.yaml"
    assert inventory_path(None) == tmp_path / "env.yaml"
    monkeypatch.delenv("BITAT_EDGE_INVENTORY")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert inventory_path(None) is None
    (tmp_path / ".config" / "bitat-edge").mkdir(parents=True)
    (tmp_path / ".config" / "bitat-edge" / "devices.yaml").write_text("devices: {}\n")
    assert inventory_path(None) == tmp_path / ".config" / "bitat-edge" / "devices.yaml"


@pytest.mark.parametrize(("text", "expected"), [
    ("local", ("local", "", "", 22, "")),
    ("qemu", ("qemu", "", "", 22, "")),
    ("adb", ("adb", "", "", 22, "")),
    ("adb:R58M123", ("adb", "", "", 22, "R58M123")),
    ("ssh://pi@10.1.2.3", ("ssh", "10.1.2.3", "pi", 22, "")),
    ("ssh://root@127.0.0.1:2022", ("ssh", "127.0.0.1", "root", 2022, "")),
])
def test_transport_specs(text, expected):
    spec = parse_spec(text)
    assert (spec.kind, spec.host, spec.user, spec.port, spec.serial) == expected


@pytest.mark.parametrize("text", ["telnet://x", "ssh://", "ssh://pi@host:notaport", "ssh://pi@host/path"])
def test_bad_transport_specs(text):
    with pytest.raises(BenchError, match="transport"):
        parse_spec(text)
