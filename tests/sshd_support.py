"""A real OpenSSH sshd on 127.0.0.1 for tests (no paramiko server, no mocks).

``start_sshd()`` writes its own host key, sshd_config and an authorized-keys directory
(``AuthorizedKeysFile <dir>/authorized_keys/%u``, so root's real ~/.ssh is never
touched), starts ``/usr/sbin/sshd -D -e -f CONFIG`` under a clean environment in its
own process group, and waits until the port answers with an SSH banner. ``stop()``
ends exactly that process group (the listener and the per-connection children it
forked), by id.

The directory lives directly under /tmp with mode 0755 because sshd reads a user's
authorized_keys *as that user*: a non-root test user must be able to traverse to it.
Private keys inside stay 0600.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap.inventory.model import JumpHost, Master, SSHSettings

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
START_TIMEOUT = 10.0  # seconds for sshd to accept and send its banner
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL on teardown


def keygen(path: Path, key_type: str = "ed25519", comment: str = "bootstrap-test") -> Path:
    """Create an unencrypted key pair at ``path`` (+ ``.pub``); returns ``path``."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sshd:
    root: Path
    port: int
    host_key: Path  # private host key (its .pub is what known_hosts records)
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_users: list[str] = field(default_factory=list)

    host: str = "127.0.0.1"

    @property
    def authorized_keys_dir(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def host_pub_line(self) -> str:
        """``type base64`` of the host key (no host field, no comment)."""
        fields = (self.host_key.with_suffix(".pub")).read_text().split()
        return f"{fields[0]} {fields[1]}"

    def known_hosts_line(self, name: str | None = None) -> str:
        """A plain known_hosts line, by default in the ``[127.0.0.1]:PORT`` form."""
        return f"{name or f'[{self.host}]:{self.port}'} {self.host_pub_line}\n"

    def fingerprint(self) -> str:
        """OpenSSH's SHA256 fingerprint of the host key, as ``ssh-keygen -l`` prints it."""
        out = subprocess.run(
            [SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(self.host_key.with_suffix(".pub"))],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def authorize(self, user: str, public_key: Path) -> None:
        """Allow ``user`` to log in with the key whose .pub is ``public_key``."""
        target = self.authorized_keys_dir / user
        with target.open("a") as f:
            f.write(public_key.read_text())
        target.chmod(0o644)

    def new_client_key(self, name: str, key_type: str = "ed25519") -> Path:
        return keygen(self.root / "client" / name, key_type)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """End the sshd process group we started (listener and per-connection children)."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Per-connection children of the group may outlive the listener for a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _write_config(sshd: Sshd) -> None:
    sshd.config.write_text(
        "\n".join(
            [
                f"Port {sshd.port}",
                f"ListenAddress {sshd.host}",
                f"HostKey {sshd.host_key}",
                "PidFile none",
                "UsePAM no",
                # The key dir sits under /tmp (world-writable parent): sshd's StrictModes
                # would refuse it.
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                f"AuthorizedKeysFile {sshd.authorized_keys_dir}/%u",
                "AllowTcpForwarding yes",
                "Subsystem sftp internal-sftp",
                "MaxSessions 64",
                "MaxStartups 100:30:200",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )


def _wait_for_banner(sshd: Sshd, deadline: float) -> bool:
    while time.monotonic() < deadline:
        assert sshd.proc is not None
        if sshd.proc.poll() is not None:
            return False
        try:
            with socket.create_connection((sshd.host, sshd.port), timeout=1.0) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def start_sshd(attempts: int = 3) -> Sshd:
    """Start a private sshd on a random free loopback port. Caller must ``cleanup()``."""
    # sshd needs its privilege-separation directory; Debian's unit would create it.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bootstrap-sshd-", dir="/tmp"))
    root.chmod(0o755)
    (root / "authorized_keys").mkdir(mode=0o755)
    (root / "client").mkdir(mode=0o700)
    host_key = keygen(root / "ssh_host_ed25519_key", comment="test-host")
    last_log = ""
    for _ in range(attempts):
        sshd = Sshd(
            root=root,
            port=free_port(),
            host_key=host_key,
            config=root / "sshd_config",
            log=root / "sshd.log",
        )
        _write_config(sshd)
        with sshd.log.open("ab") as log:
            sshd.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(sshd.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                start_new_session=True,  # own process group: stop() ends exactly it
            )
        if _wait_for_banner(sshd, time.monotonic() + START_TIMEOUT):
            return sshd
        last_log = sshd.log_text()
        sshd.stop()  # e.g. the port was taken between free_port() and bind: retry
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"sshd did not start; log:\n{last_log}")


def make_master(
    sshd: Sshd,
    known_hosts: Path,
    key: Path | None,
    *,
    name: str = "m1",
    user: str = "root",
    sudo: bool = False,
    policy: str = "strict",
    port: int | None = None,
    jump: JumpHost | None = None,
) -> Master:
    return Master(
        name=name,
        address=ipaddress.ip_address("127.0.0.1"),
        ssh=SSHSettings(
            user=user,
            port=port or sshd.port,
            identity_file=key,
            known_hosts=known_hosts,
            host_key_policy=policy,  # type: ignore[arg-type]
            sudo=sudo,
            jump_host=jump,
            connect_timeout=5.0,
        ),
        ssh_host="127.0.0.1",
    )
