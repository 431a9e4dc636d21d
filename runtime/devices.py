"""Device profiles (shipped ``devices.yaml``) merged with the user's inventory (addresses, keys, serials).

The inventory is never part of the repository: ``--inventory PATH``, else ``$BITAT_EDGE_INVENTORY``,
else ``~/.config/bitat-edge/devices.yaml``. It looks like::

    devices:
      rpi4:                               # a shipped profile name, or a new name with `like:`
        transport: ssh://pi@192.168.1.50:22
        key: ~/.ssh/id_ed25519            # private key (optional; default keys/agent otherwise)
        known_hosts: ~/.ssh/known_hosts   # optional
        python: /usr/bin/python3          # the device's Python, for interpreter engines (optional)
      pixel:
        like: android
        transport: adb:R58M12345
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runtime.elf import normalize_arch
from runtime.errors import BenchError
from runtime.transports import Transport, TransportSpec, parse_spec

PROFILES_PATH = Path(__file__).with_name("devices.yaml")
DEFAULT_INVENTORY = Path("~/.config/bitat-edge/devices.yaml")
_PROFILE_KEYS = {"description", "arch", "cpu", "transport", "threads", "binary", "docker_target", "qemu"}
_INVENTORY_KEYS = {"like", "transport", "key", "known_hosts", "python", "threads", "binary_path",
                   "connect_timeout", "description"}


@dataclass
class Device:
    """A resolved target: profile + inventory entry + command-line override."""

    name: str
    description: str
    arch: str  # aarch64 | arm | x86_64 ...
    transport: TransportSpec
    threads: int = 1
    cpu: str = ""
    binary: str = ""  # suffix of lce_benchmark_model_<binary>
    docker_target: str = ""
    qemu: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    known_hosts: str | None = None
    python: str | None = None
    binary_path: str | None = None
    connect_timeout: float = 10.0

    @property
    def emulated(self) -> bool:
        return self.transport.kind == "qemu"

    def open_transport(self) -> Transport:
        """Create the transport object (connections open lazily on first use)."""
        spec = self.transport
        if spec.kind == "local":
            from runtime.transports.local import LocalTransport

            return LocalTransport()
        if spec.kind == "qemu":
            from runtime.transports.qemu import QemuTransport

            if not self.qemu:
                raise BenchError(f"device '{self.name}': no qemu settings in its profile; use --device qemu-aarch64")
            return QemuTransport(self.qemu["binary"], self.qemu["cpu"], self.qemu["sysroot"])
        if spec.kind == "adb":
            from runtime.transports.adb import AdbTransport

            return AdbTransport(spec.serial)
        from runtime.transports.ssh import SshTransport

        return SshTransport(spec.host, spec.user, spec.port, self.key, self.known_hosts, self.connect_timeout)


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"{what} {path}: file not found") from None
    except yaml.YAMLError as exc:
        raise BenchError(f"{what} {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"{what} {path}: must be a mapping of device names, got {type(data).__name__}")
    return data


def load_profiles(path: Path = PROFILES_PATH) -> dict[str, dict[str, Any]]:
    """The shipped profiles, checked for unknown keys."""
    profiles = _read_yaml(path, "device profiles")
    for name, profile in profiles.items():
        unknown = set(profile) - _PROFILE_KEYS
        if unknown:
            raise BenchError(f"device profiles {path}: '{name}' has unknown key '{sorted(unknown)[0]}'")
    return profiles


def inventory_path(option: str | None) -> Path | None:
    """The inventory file to use: --inventory, $BITAT_EDGE_INVENTORY, the default if it exists."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get("BITAT_EDGE_INVENTORY")
    if env:
        return Path(env).expanduser()
    default = DEFAULT_INVENTORY.expanduser()
    return default if default.is_file() else None


def load_inventory(path: Path | None) -> dict[str, dict[str, Any]]:
    """The ``devices:`` mapping of an inventory file, checked for unknown keys."""
    if path is None:
        return {}
    data = _read_yaml(path, "inventory")
    if set(data) - {"devices"}:
        raise BenchError(f"inventory {path}: top-level key must be 'devices:', found '{sorted(set(data))[0]}'")
    devices = data.get("devices") or {}
    if not isinstance(devices, dict):
        raise BenchError(f"inventory {path}: 'devices' must map device names to settings")
    for name, entry in devices.items():
        if not isinstance(entry, dict):
            raise BenchError(f"inventory {path}: device '{name}' must be a mapping of settings")
        unknown = set(entry) - _INVENTORY_KEYS
        if unknown:
            raise BenchError(
                f"inventory {path}: device '{name}' has unknown key '{sorted(unknown)[0]}' "
                f"(valid: {', '.join(sorted(_INVENTORY_KEYS))})"
            )
    return devices


def _missing_address(name: str, kind: str, inventory: Path | None) -> BenchError:
    where = inventory or DEFAULT_INVENTORY
    snippet = (
        f"devices:\n  {name}:\n    transport: ssh://pi@<address>:22\n    key: ~/.ssh/id_ed25519\n"
        if kind == "ssh" else f"devices:\n  {name}:\n    transport: adb:<serial from `adb devices`>\n"
    )
    return BenchError(
        f"device '{name}' has no address configured; add it to your inventory ({where}):\n\n{snippet}\n"
        f"or pass --transport ssh://user@host[:port]. For emulated numbers without a board, use "
        f"--device qemu-aarch64 (timings labelled emulated)."
    )


def resolve_device(name: str, inventory: Path | None = None, transport: str | None = None,
                   profiles: dict[str, dict[str, Any]] | None = None) -> Device:
    """Merge profile ``name`` (or an inventory entry that is ``like:`` one) with its inventory settings."""
    profiles = load_profiles() if profiles is None else profiles
    entries = load_inventory(inventory)
    entry = dict(entries.get(name, {}))
    base_name = entry.pop("like", name)
    if base_name not in profiles:
        known = sorted(set(profiles) | set(entries))
        raise BenchError(f"device '{name}': unknown; known devices: {', '.join(known)} (add others to your inventory)")
    profile = {**profiles[base_name], **{k: v for k, v in entry.items() if k in ("description", "threads")}}
    spec = parse_spec(transport or entry.get("transport") or profile["transport"])
    if spec.kind == "ssh" and not spec.host:
        raise _missing_address(name, "ssh", inventory)
    arch = profile.get("arch", "native")
    if arch == "native":
        arch = normalize_arch(platform.machine())
    try:
        threads = int(profile.get("threads", 1))
        timeout = float(entry.get("connect_timeout", 10))
    except (TypeError, ValueError):
        raise BenchError(f"device '{name}': 'threads' and 'connect_timeout' must be numbers") from None
    return Device(
        name=name,
        description=str(profile.get("description", "")),
        arch=normalize_arch(arch),
        transport=spec,
        threads=threads,
        cpu=str(profile.get("cpu", "")),
        binary=str(profile.get("binary", "")),
        docker_target=str(profile.get("docker_target", "")),
        qemu=dict(profile.get("qemu") or {}),
        key=entry.get("key"),
        known_hosts=entry.get("known_hosts"),
        python=entry.get("python"),
        binary_path=entry.get("binary_path"),
        connect_timeout=timeout,
    )
