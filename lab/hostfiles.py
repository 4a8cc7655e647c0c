"""Per-host files prepared from the root namespace: dirs, sshd config and keys, identity.

Also the lab's SSH client key, known_hosts (the hosts' real keys) and the `labadmin`
user with passwordless sudo for the transport's sudo path.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from lab.config import (
    CLIENT_KEY,
    HOST_DIR_BINDS,
    HOST_POD_LOGS,
    HOST_RUNNER_STATUS,
    HOST_SSHD_LOG,
    KNOWN_HOSTS,
    SSH_DIR,
    SUDO_USER,
    SUDOERS_FILE,
    HostSpec,
    LabError,
    LabPlan,
)

SSHD_CONFIG = """\
# sshd of lab host {name} (written by `python -m lab up`)
ListenAddress {address}:22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
UsePAM no
StrictModes yes
AllowTcpForwarding local
X11Forwarding no
PrintMotd no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
PidFile none
LogLevel INFO
"""


def _keygen(path: Path, comment: str) -> None:
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    if proc.returncode != 0:
        raise LabError(f"ssh-keygen for {path} failed: {proc.stderr.strip()}")
    path.chmod(0o600)


def ensure_client_key() -> str:
    """The lab's SSH client key (kept across labs); returns the public key line."""
    SSH_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    SSH_DIR.chmod(0o700)
    pub = CLIENT_KEY.with_name(CLIENT_KEY.name + ".pub")
    if not (CLIENT_KEY.exists() and pub.exists()):
        _keygen(CLIENT_KEY, "bslab-client")
    CLIENT_KEY.chmod(0o600)
    return pub.read_text().strip()


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def hosts_file(lab: LabPlan) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{h.address}\t{h.name}" for h in lab.hosts]
    return "\n".join(lines) + "\n"


def prepare_host(lab: LabPlan, host: HostSpec, client_pub: str) -> str:
    """Create the host's directories and files; return its known_hosts line."""
    root = host.data_dir
    if root.exists():
        shutil.rmtree(root)
    for sub, _target in HOST_DIR_BINDS:
        (root / sub).mkdir(parents=True, mode=0o755)
    (root / "etc-kubernetes" / "manifests").mkdir(mode=0o755)
    (root / "var-lib-etcd").chmod(0o700)  # as kubeadm leaves it
    status_dir = Path(HOST_RUNNER_STATUS).parent.relative_to("/var/lib/kubelet")
    (root / "var-lib-kubelet" / status_dir).mkdir(parents=True, mode=0o755)
    (root / "var-log" / Path(HOST_POD_LOGS).relative_to("/var/log")).mkdir(mode=0o755)
    (root / "var-log" / Path(HOST_SSHD_LOG).name).touch(mode=0o600)

    ssh = root / "etc-ssh"
    _keygen(ssh / "ssh_host_ed25519_key", f"root@{host.name}")
    _write(ssh / "sshd_config", SSHD_CONFIG.format(name=host.name, address=host.address))
    (ssh / "authorized_keys").mkdir(mode=0o755)
    for user in ("root", SUDO_USER):
        _write(ssh / "authorized_keys" / user, client_pub + "\n")

    _write(root / "hostname", host.name + "\n")
    _write(
        root / "root-bashrc", "# lab host: a fresh machine's root has no login-time setup\n", 0o644
    )
    _write(root / "hosts", hosts_file(lab))
    _write(root / "machine-id", secrets.token_hex(16) + "\n", 0o444)

    key_type, key_b64 = (ssh / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"{host.name},{host.address} {key_type} {key_b64}"


def write_known_hosts(lines: list[str]) -> None:
    _write(KNOWN_HOSTS, "\n".join(lines) + "\n", 0o600)


def ensure_sudo_user(record_created: list[str]) -> None:
    """`labadmin` in the root fs (shared by all hosts) plus its NOPASSWD sudoers file."""
    try:
        pwd.getpwnam(SUDO_USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", SUDO_USER],
            check=False,
            capture_output=True,
        )
        # 9: another lab instance created it a moment ago (the user is shared, never removed).
        if made.returncode not in (0, 9):
            raise LabError(f"useradd {SUDO_USER} failed: {made.stderr.decode().strip()}") from None
        record_created.append(f"user:{SUDO_USER}")
    # "!" (useradd's default) is a locked account, which sshd refuses even for keys
    # when UsePAM is off; "*" means "no password" and is not locked.
    subprocess.run(["usermod", "-p", "*", SUDO_USER], check=True, capture_output=True)
    tmp = SUDOERS_FILE.with_name(f".{SUDOERS_FILE.name}.tmp")
    tmp.write_text(
        f"# lab only, removed by `python -m lab down`\n{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n"
    )
    tmp.chmod(0o440)
    check = subprocess.run(["visudo", "-cf", str(tmp)], capture_output=True, text=True)
    if check.returncode != 0:
        tmp.unlink()
        raise LabError(f"sudoers file rejected by visudo: {check.stdout}{check.stderr}")
    os.replace(tmp, SUDOERS_FILE)
