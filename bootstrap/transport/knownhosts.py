"""Host-key verification against an OpenSSH known_hosts file.

OpenSSH semantics we keep (peers.md §3: k0sctl#717/#813 wrote entries OpenSSH then
disagreed with):
- the lookup name is ``host`` for port 22 and ``[host]:port`` otherwise;
- hashed names (``|1|salt|hash``) match like plain ones;
- a host whose known key differs - or which is known only with another key type - is a
  *mismatch*, refused even under accept-new (accept-new never replaces a key);
- accept-new appends ``name type base64`` and never rewrites existing lines.
Lines with markers (``@cert-authority``, ``@revoked``) are not understood by paramiko's
parser; we skip ``@cert-authority`` lines and refuse a presented key that is ``@revoked``.
Wildcard patterns and negations are not supported (OpenSSH would honour them).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap.errors import HostKeyMismatch, HostKeyUnknown
from bootstrap.transport.sshlib import paramiko

log = logging.getLogger("bootstrap.transport")

# Appends from parallel connects (connect_all) must not interleave.
_RECORD_LOCK = threading.Lock()


def host_key_name(host: str, port: int) -> str:
    """The name OpenSSH files a host key under."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` exactly as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass
class KnownHosts:
    path: Path
    keys: paramiko.HostKeys = field(default_factory=paramiko.HostKeys)
    revoked: list[bytes] = field(default_factory=list)  # key blobs marked @revoked
    entries: list[tuple[str, paramiko.PKey]] = field(default_factory=list)  # (name, key)

    @classmethod
    def load(cls, path: Path) -> KnownHosts:
        """Parse the file (missing file: empty). Unparseable lines are skipped, as ssh does."""
        known = cls(path=path.expanduser())
        try:
            text = known.path.read_text(errors="replace")
        except FileNotFoundError:
            return known
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("@"):
                marker, _, rest = line.partition(" ")
                if marker == "@revoked":
                    fields = rest.split()
                    if len(fields) >= 3:
                        with contextlib.suppress(binascii.Error, ValueError):
                            known.revoked.append(base64.b64decode(fields[2]))
                continue
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
            except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError):
                continue
            if entry is None or entry.key is None:
                continue
            for name in entry.hostnames:
                known.keys.add(name, entry.key.get_name(), entry.key)
                known.entries.append((name, entry.key))
        return known

    def known_keys(self, name: str) -> list[paramiko.PKey]:
        found = self.keys.lookup(name)
        return list(found.values()) if found is not None else []

    def record(self, name: str, key: paramiko.PKey) -> None:
        """Append ``name type base64``; create the file 0600 and its dir 0700 if missing."""
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        with _RECORD_LOCK:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                # Do not glue our line onto a last line that lacks its newline.
                if f.tell() > 0:
                    with open(self.path, "rb") as r:
                        r.seek(-1, os.SEEK_END)
                        if r.read(1) != b"\n":
                            f.write("\n")
                f.write(line)
        self.keys.add(name, key.get_name(), key)
        self.entries.append((name, key))


def removal_hint(known_hosts: Path, name: str) -> str:
    return (
        f"if the host was reinstalled on purpose, verify the new key out of band, then "
        f"remove the old entry: ssh-keygen -f {known_hosts} -R '{name}'"
    )


def unknown_hint(known_hosts: Path, host: str, port: int) -> str:
    return (
        "verify the fingerprint out of band, then re-run with --accept-new-host-keys "
        f"(or set ssh.hostKeyPolicy: accept-new), or add it yourself: "
        f"ssh-keyscan -p {port} {host} >> {known_hosts}"
    )


def mismatch_error(
    host_label: str,
    known_hosts: Path,
    name: str,
    presented: paramiko.PKey,
    expected: list[paramiko.PKey],
) -> HostKeyMismatch:
    expected_text = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in expected) or "?"
    return HostKeyMismatch(
        f"HOST KEY CHANGED for {name}: known_hosts ({known_hosts}) expects {expected_text}, "
        f"the host presented {presented.get_name()} {fingerprint(presented)}. "
        "Refusing to connect (this may be a man-in-the-middle attack); known_hosts is unchanged",
        host=host_label,
        hint=removal_hint(known_hosts, name),
    )


class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a host with no key in our HostKeys.

    Never AutoAddPolicy: unknown -> HostKeyUnknown unless accept-new was asked for.
    A key matching the name but of another type counts as a mismatch (see module doc),
    and a revoked key is refused before anything else.
    """

    def __init__(
        self,
        known: KnownHosts,
        *,
        host_label: str,
        host: str,
        port: int,
        accept_new: bool,
        notify: Callable[[str], None],
    ) -> None:
        self.known = known
        self.host_label = host_label
        self.host = host
        self.port = port
        self.accept_new = accept_new
        self.notify = notify

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        check_not_revoked(self.known, self.host_label, key)
        others = self.known.known_keys(hostname)
        if others:
            raise mismatch_error(self.host_label, self.known.path, hostname, key, others)
        if not self.accept_new:
            raise HostKeyUnknown(
                f"host key for {hostname} is not in {self.known.path} "
                f"(the host presented {key.get_name()} {fingerprint(key)})",
                host=self.host_label,
                hint=unknown_hint(self.known.path, self.host, self.port),
            )
        self.known.record(hostname, key)
        notice = (
            f"accepted new host key for {hostname}: {key.get_name()} {fingerprint(key)} "
            f"(recorded in {self.known.path})"
        )
        log.warning("%s: %s", self.host_label, notice)
        self.notify(notice)


def check_not_revoked(known: KnownHosts, host_label: str, key: paramiko.PKey) -> None:
    if key.asbytes() in known.revoked:
        raise HostKeyMismatch(
            f"the host presented a key marked @revoked in {known.path}: "
            f"{key.get_name()} {fingerprint(key)}",
            host=host_label,
            hint="the host must get a new host key; do not connect until it has one",
        )
