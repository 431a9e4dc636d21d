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

Both files are validated field by field (``Profile``, ``InventoryEntry``): an unknown or mistyped key is
one line naming the file, the device and the field, with the valid keys listed.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, field_validator

from bitat_edge import schema
from runtime.elf import normalize_arch
from runtime.emulation.sysroot import NO_LITERT
from runtime.errors import BenchError, ConfigFileError
from runtime.transports import Capabilities, Transport, TransportSpec, parse_spec, transport_class

PROFILES_PATH = Path(__file__).with_name("devices.yaml")
DEFAULT_INVENTORY = Path("~/.config/bitat-edge/devices.yaml")
Positive = Annotated[int, Field(gt=0)]
E = TypeVar("E", bound=schema.Schema)


class QemuSettings(schema.Schema):
    """How the ``qemu`` transport emulates the profile's CPU."""

    binary: str  # qemu-aarch64, qemu-arm
    cpu: str  # -cpu, e.g. cortex-a72
    sysroot: str  # -L for dynamically linked programs, e.g. /usr/aarch64-linux-gnu


class Profile(schema.Schema):
    """One shipped device profile (``runtime/devices.yaml``): what the device is, never where it is."""

    description: str = ""
    arch: str  # aarch64 | arm | native (this machine)
    cpu: str = ""
    transport: str  # a transport kind; ssh/adb take their address from the inventory
    threads: Positive = 1
    binary: str = ""  # suffix of runtime/bin/lce_benchmark_model_<binary>
    docker_target: str = ""  # `make docker-lce-<target>` builds that binary
    qemu: QemuSettings | None = None
    board: str = ""  # a microcontroller board of runtime/mcu/boards.py (transport qemu-system)


class InventoryEntry(schema.Schema):
    """A user's settings for one device: a shipped profile's name, or a new name that is ``like:`` one."""

    like: str | None = None
    transport: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    python: str | None = None
    threads: Positive | None = None
    binary_path: str | None = None
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    description: str | None = None


class Inventory(schema.Schema):
    """The user's inventory file: ``devices:`` mapping names to settings (each an ``InventoryEntry``)."""

    devices: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("devices", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return {} if value is None else value


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
    qemu: QemuSettings | None = None
    board: str = ""  # microcontroller board (runtime/mcu/boards.py)
    key: str | None = None
    known_hosts: str | None = None
    python: str | None = None
    binary_path: str | None = None
    connect_timeout: float = 10.0

    @property
    def capabilities(self) -> Capabilities:
        """What the device's transport offers."""
        return transport_class(self.transport.kind).capabilities

    @property
    def emulated(self) -> bool:
        return self.capabilities.emulated

    @property
    def interpreter_python(self) -> str | None:
        """The Python that runs the interpreter engines there, or None when the target has none."""
        python = self.capabilities.python
        if python == "harness":
            return sys.executable
        if python == "sysroot":  # the emulation sysroot's, which the transport runs; none without LiteRT
            return None if self.arch in NO_LITERT else "python3"
        return (self.python or "python3") if python == "target" else None

    def open_transport(self) -> Transport:
        """Create the transport object (connections open lazily on first use)."""
        return transport_class(self.transport.kind).open(self.transport, self)


def _entry(cls: type[E], data: Any, path: Path, name: object) -> E:
    """One device's settings, validated; errors read ``<file> (device '<name>'): field '<key>' ...``."""
    return schema.parse(cls, data, f"{path} (device '{name}')", ConfigFileError)


def load_profiles(path: Path = PROFILES_PATH) -> dict[str, Profile]:
    """The shipped profiles, each validated (unknown or mistyped keys name the file, device and field)."""
    entries = schema.load_yaml_mapping(path, "device profiles file", ConfigFileError)
    return {str(name): _entry(Profile, entry, path, name) for name, entry in entries.items()}


def inventory_path(option: str | None) -> Path | None:
    """The inventory file to use: --inventory, $BITAT_EDGE_INVENTORY, the default if it exists."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get("BITAT_EDGE_INVENTORY")
    if env:
        return Path(env).expanduser()
    default = DEFAULT_INVENTORY.expanduser()
    return default if default.is_file() else None


def load_inventory(path: Path | None) -> dict[str, InventoryEntry]:
    """The ``devices:`` mapping of an inventory file, validated."""
    if path is None:
        return {}
    data = schema.load_yaml_mapping(path, "device inventory file", ConfigFileError)
    devices = schema.parse(Inventory, data, str(path), ConfigFileError).devices
    return {name: _entry(InventoryEntry, entry, path, name) for name, entry in devices.items()}


def _missing_address(name: str, spec: TransportSpec, template: str, inventory: Path | None) -> BenchError:
    where = inventory or DEFAULT_INVENTORY
    lines = "".join(f"    {line}\n" for line in template.splitlines())
    return BenchError(
        f"device '{name}' has no address configured; add it to your inventory ({where}):\n\n"
        f"devices:\n  {name}:\n{lines}\n"
        f"or pass --transport {' or '.join(transport_class(spec.kind).forms)}. For emulated numbers without a board, use "
        f"--device qemu-aarch64 (timings labelled emulated)."
    )


def resolve_device(name: str, inventory: Path | None = None, transport: str | None = None,
                   profiles: dict[str, Profile] | None = None) -> Device:
    """Merge profile ``name`` (or an inventory entry that is ``like:`` one) with its inventory settings."""
    profiles = load_profiles() if profiles is None else profiles
    entries = load_inventory(inventory)
    entry = entries.get(name, InventoryEntry())
    base_name = entry.like or name
    if base_name not in profiles:
        known = sorted(set(profiles) | set(entries))
        raise BenchError(f"device '{name}': unknown; known devices: {', '.join(known)} (add others to your inventory)")
    profile = profiles[base_name]
    spec = parse_spec(transport or entry.transport or profile.transport)
    template = transport_class(spec.kind).address_template(spec)
    if template:
        raise _missing_address(name, spec, template, inventory)
    return Device(
        name=name,
        description=profile.description if entry.description is None else entry.description,
        arch=normalize_arch(platform.machine() if profile.arch == "native" else profile.arch),
        transport=spec,
        threads=entry.threads or profile.threads,
        cpu=profile.cpu,
        binary=profile.binary,
        docker_target=profile.docker_target,
        qemu=profile.qemu,
        board=profile.board,
        key=entry.key,
        known_hosts=entry.known_hosts,
        python=entry.python,
        binary_path=entry.binary_path,
        connect_timeout=entry.connect_timeout,
    )
