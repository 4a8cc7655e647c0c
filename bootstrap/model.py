"""Value types shared by the pure core and the transport.

A master's desired state is a value: remote path -> FileSpec. Push compares it with
what the host has (sha256 + mode) and writes only what differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class FileSpec:
    """One file as it must be on a host."""

    path: str  # absolute path on the host
    content: bytes = field(repr=False)
    mode: int  # e.g. 0o600
    secret: bool = False  # key material: never printed, never diffed

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class RemoteFile:
    """What a host has at a path (regular file)."""

    sha256: str
    mode: int  # permission bits only, e.g. 0o600


class HeldCommand(Protocol):
    """A remote command kept running for as long as we hold it (a lock's holder, say):
    its stdin stays open until ``release``, so it ends when we say so or when the
    connection goes away, whichever comes first."""

    def readline(self, timeout: float) -> str | None:
        """The next stdout line without its newline; None at the end of output."""
        ...

    def release(self, timeout: float = 5.0) -> None:
        """Close its stdin and wait (bounded) until it has exited; never raises."""
        ...


class RemoteHost(Protocol):
    """What the rest of the package may ask of a connected host.

    Implemented by ``bootstrap.transport.SSHHost``; no paramiko type crosses this line.
    Every method raises ``bootstrap.errors.TransportError`` subclasses naming the host.
    """

    name: str

    def run(
        self,
        command: str,
        *,
        sudo: bool = True,
        check: bool = True,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run a shell command (through `sudo -n` when the host needs it and sudo=True).
        check=True raises RemoteCommandFailed on a non-zero exit."""
        ...

    def stat_files(self, paths: Sequence[str]) -> dict[str, RemoteFile | None]:
        """sha256 and mode of each path in one round trip; None where absent."""
        ...

    def read_file(self, path: str) -> bytes:
        """Whole file (as root when the host uses sudo)."""
        ...

    def write_file_atomic(self, spec: FileSpec) -> None:
        """Create parent dirs, stage under a dot-name/staging dir on the same filesystem,
        set the mode, then rename into place. The target is never seen half written."""
        ...

    def forward(
        self, remote_port: int, remote_host: str = "127.0.0.1"
    ) -> AbstractContextManager[int]:
        """Forward a local loopback port to remote_host:remote_port as seen from the host.
        Yields the local port; closes the listener on exit."""
        ...

    def hold(self, command: str, *, sudo: bool = True) -> HeldCommand:
        """Start ``command`` (as root when the host needs sudo and sudo=True) with its
        stdin kept open; see HeldCommand."""
        ...

    def remove_files(self, paths: Sequence[str]) -> None:
        """rm -f each path (as root when the host uses sudo)."""
        ...

    def backup_files(self, paths: Sequence[str], backup_dir: str) -> None:
        """Copy the existing ones of paths into backup_dir (created 0700), keeping modes."""
        ...

    def close(self) -> None: ...
