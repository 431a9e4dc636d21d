"""SSH with paramiko: host-key checking on (known_hosts, unknown hosts refused), SFTP push/pull,
quoted remote argument lists, connect and command timeouts, bounded retries on a dropped link."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from runtime.errors import BenchError, TransportTimeout
from runtime.transports.base import Capabilities, CompletedRun, Transport, TransportSpec

if TYPE_CHECKING:
    import paramiko

    from runtime.devices import Device


def _dropped() -> tuple[type[BaseException], ...]:
    """What a dropped link raises (paramiko is imported on first use: a local session never loads it)."""
    import paramiko

    return EOFError, ConnectionResetError, BrokenPipeError, paramiko.SSHException, TimeoutError


class ConnectionDropped(EOFError):
    """The SSH session ended while a command or transfer was in flight."""


class SshTransport(Transport):
    """A Linux target reached over SSH (Raspberry Pi, any ARM board)."""

    kind = "ssh"
    capabilities = Capabilities(python="target")
    forms = ("ssh://user@host[:port]",)

    @classmethod
    def parse(cls, address: str, text: str) -> TransportSpec:
        """``ssh://user@host[:port]``; a bare ``ssh`` (a profile) leaves the address to the inventory."""
        if not address:
            return TransportSpec(cls.kind)
        parts = urlsplit(f"ssh:{address}")
        try:
            port = parts.port or 22
        except ValueError:
            port = -1
        if not address.startswith("//") or not parts.hostname or port <= 0 or parts.path not in ("", "/"):
            raise BenchError(f"transport {text!r}: write it as ssh://user@host[:port] (e.g. ssh://pi@192.168.1.50:22)")
        return TransportSpec(cls.kind, host=parts.hostname, user=parts.username or "", port=port)

    @classmethod
    def address_template(cls, spec: TransportSpec) -> str:
        return "" if spec.host else "transport: ssh://pi@<address>:22\nkey: ~/.ssh/id_ed25519"

    @classmethod
    def open(cls, spec: TransportSpec, device: Device) -> SshTransport:
        return cls(spec.host, spec.user, spec.port, device.key, device.known_hosts, device.connect_timeout)

    def __init__(self, host: str, user: str = "", port: int = 22, key: str | None = None,
                 known_hosts: str | None = None, connect_timeout: float = 10.0, retries: int = 2) -> None:
        self.host, self.user, self.port = host, user, port
        self.key = str(Path(key).expanduser()) if key else None
        self.known_hosts = str(Path(known_hosts).expanduser()) if known_hosts else None
        self.connect_timeout, self.retries = connect_timeout, retries
        self._client: paramiko.SSHClient | None = None
        self._workdir: str | None = None

    @property
    def label(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}"

    # -- connection -----------------------------------------------------------------------------
    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        if self._client is not None and self._client.get_transport() is not None \
                and self._client.get_transport().is_active():
            return self._client
        self._drop()
        client = paramiko.SSHClient()
        known = self.known_hosts or str(Path("~/.ssh/known_hosts").expanduser())
        if Path(known).is_file():
            client.get_host_keys().load(known)  # read-only: never written back
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        hostspec = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        try:
            client.connect(
                self.host, port=self.port, username=self.user or None, key_filename=self.key,
                look_for_keys=self.key is None, allow_agent=self.key is None, timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout, auth_timeout=self.connect_timeout,
            )
        except paramiko.BadHostKeyException:
            client.close()
            raise BenchError(
                f"{self.label}: the host key does not match the one in {known} (reinstalled device or an attack); "
                f"check it, then remove the old entry with `ssh-keygen -R '{hostspec}' -f {known}` and add the new one"
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise BenchError(
                f"{self.label}: authentication failed with key {self.key or '(default keys/agent)'}; put the public "
                "key in the device's ~/.ssh/authorized_keys or set 'key:' for this device in your inventory"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise BenchError(
                    f"{self.label}: unknown host key ({hostspec} is not in {known}); verify the device's key and "
                    f"add it with `ssh-keyscan -p {self.port} {self.host} >> {known}` (or connect once with ssh)"
                ) from None
            raise BenchError(f"{self.label}: SSH handshake failed ({exc}); check that an SSH server listens there") from None
        except OSError as exc:
            client.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise BenchError(
                f"{self.label}: cannot reach the device ({reason}, {self.connect_timeout:g} s connect timeout); "
                "check the address and port in your inventory and that the device is on and runs sshd"
            ) from None
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _retrying(self, what: str, action):
        """Run ``action`` and reconnect + retry up to ``retries`` times when the link drops."""
        for attempt in range(self.retries + 1):
            try:
                return action()
            except _dropped() as exc:
                self._drop()
                if attempt == self.retries:
                    raise BenchError(
                        f"{self.label}: the connection dropped during {what} {attempt + 1} times ({exc or 'EOF'}); "
                        "check the network and the device, then run again"
                    ) from None
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- Transport ------------------------------------------------------------------------------
    def workdir(self) -> str:
        if self._workdir is None:
            done = self.run(["mktemp", "-d", "/tmp/bitat-edge.XXXXXX"], timeout=30)
            if done.returncode != 0 or not done.stdout.strip():
                raise BenchError(f"{self.label}: cannot create a temporary directory ({done.output.strip()})")
            self._workdir = done.stdout.strip()
        return self._workdir

    def push(self, local: str, remote: str, executable: bool = False) -> None:
        def put() -> None:
            with self._connect().open_sftp() as sftp:
                sftp.get_channel().settimeout(max(self.connect_timeout, 60))
                sftp.put(local, remote)
                if executable:
                    sftp.chmod(remote, 0o755)

        self._retrying(f"upload of {Path(local).name}", put)

    def pull(self, remote: str, local: str) -> None:
        def get() -> None:
            with self._connect().open_sftp() as sftp:
                sftp.get_channel().settimeout(max(self.connect_timeout, 60))
                try:
                    sftp.get(remote, local)
                except FileNotFoundError:
                    raise BenchError(f"{self.label}: {remote} was not written on the device") from None

        self._retrying(f"download of {remote}", get)

    def run(self, argv: list[str], timeout: float) -> CompletedRun:
        return self._retrying(f"`{argv[0]}`", lambda: self._exec(argv, timeout))

    def _exec(self, argv: list[str], timeout: float) -> CompletedRun:
        transport = self._connect().get_transport()
        channel = transport.open_session(timeout=self.connect_timeout)
        # coreutils `timeout` stops the remote process itself; the local deadline below is the backstop.
        command = shlex.join(["timeout", "-k", "5", f"{timeout:g}", *argv])
        start = time.monotonic()
        deadline = start + timeout + 15
        channel.exec_command(command)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        try:
            while True:
                progressed = False
                while channel.recv_ready():
                    out += channel.recv(65536)
                    progressed = True
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    progressed = True
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if not transport.is_active():
                    raise ConnectionDropped("the SSH session closed")
                if time.monotonic() > deadline:
                    raise TransportTimeout(
                        f"{shlex.join(argv[:3])}: no answer from {self.label} after {timeout:g} s; the command was "
                        "abandoned (raise the timeout or lower --runs)"
                    )
                if not progressed:
                    time.sleep(0.01)
            code = channel.recv_exit_status()
            if code == -1:  # the channel closed without an exit status: the session died under us
                raise ConnectionDropped("the SSH channel closed without an exit status")
        finally:
            channel.close()
        seconds = time.monotonic() - start
        if code in (124, 137) and seconds >= timeout:
            raise TransportTimeout(
                f"{shlex.join(argv[:3])}: still running on {self.label} after {timeout:g} s and was killed; "
                "raise the timeout or lower --runs"
            )
        return CompletedRun(out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), code, seconds)

    def close(self) -> None:
        if self._workdir is not None:
            try:
                self.run(["rm", "-rf", self._workdir], timeout=30)
            except BenchError:
                pass
            self._workdir = None
        self._drop()
