#!/usr/bin/env python3
"""Write the SSH files vagrant/masters.yaml points at, from the running Vagrant VMs.

    cd vagrant && vagrant up && ./known_hosts.py      (or: python3 vagrant/known_hosts.py)

For every master in the inventory:

- the private key Vagrant generated for that VM (``IdentityFile`` in ``vagrant ssh-config``;
  each VM has its own once Vagrant replaced the insecure key) is copied, mode 0600, to the
  master's ``ssh.identityFile``;
- its host key is read twice, over two independent paths: from the VM's own
  ``/etc/ssh/ssh_host_<type>_key.pub`` through Vagrant's SSH connection, and with
  ``ssh-keyscan`` against the private address ``bootstrap`` will connect to. Both must be
  the same key; then ``<address> <type> <key>`` goes into ``ssh.knownHosts`` (lines for
  other hosts in that file are kept).

So ``hostKeyPolicy: strict`` verifies real host keys instead of skipping the check.
Exit status: 0 written, 1 a VM or a command failed, 2 bad inventory or usage.
Needs only Python 3.11+, PyYAML, OpenSSH's ssh/ssh-keyscan and vagrant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_INVENTORY = HERE / "masters.yaml"
DEFAULT_KEY_TYPE = "ed25519"
# --key-type (ssh-keyscan -t, file name part) -> the key type in .pub / known_hosts lines.
KEY_TYPES = {"ed25519": "ssh-ed25519", "ecdsa": "ecdsa-sha2-nistp256", "rsa": "ssh-rsa"}
KEYSCAN_TIMEOUT = 10  # seconds, ssh-keyscan -T


class HelperError(Exception):
    """A failure to report as one line (no traceback). ``exit_code`` 1 or 2."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    """One master as this helper needs it (paths already resolved)."""

    name: str
    address: str
    port: int
    identity_file: Path
    known_hosts: Path


@dataclass(frozen=True)
class HostKey:
    key_type: str  # "ssh-ed25519"
    blob: str  # base64

    def line_for(self, host: str) -> str:
        return f"{host} {self.key_type} {self.blob}"


def known_hosts_host(address: str, port: int) -> str:
    """The host field OpenSSH (and paramiko) look up: bare for port 22, else [addr]:port."""
    return address if port == 22 else f"[{address}]:{port}"


def _resolve(base: Path, value: object, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise HelperError(f"inventory: {what} must be a non-empty path", exit_code=2)
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def targets_from_inventory(path: Path) -> list[Target]:
    """Masters with their merged SSH settings; relative paths against the file's directory."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise HelperError(f"cannot read inventory {path}: {exc}", exit_code=2) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("masters"), list):
        raise HelperError(f"inventory {path}: no 'masters' list", exit_code=2)
    defaults = doc.get("ssh") or {}
    base = path.resolve().parent
    targets = []
    for i, master in enumerate(doc["masters"]):
        if not isinstance(master, dict) or "name" not in master or "address" not in master:
            raise HelperError(f"inventory: masters[{i}] needs name and address", exit_code=2)
        ssh = {**defaults, **(master.get("ssh") or {})}
        name = str(master["name"])
        targets.append(
            Target(
                name=name,
                address=str(ssh.get("host", master["address"])),
                port=int(ssh.get("port", 22)),
                identity_file=_resolve(base, ssh.get("identityFile"), f"{name}: identityFile"),
                known_hosts=_resolve(
                    base, ssh.get("knownHosts", "~/.ssh/known_hosts"), f"{name}: knownHosts"
                ),
            )
        )
    return targets


def parse_ssh_config(text: str) -> dict[str, dict[str, list[str]]]:
    """``vagrant ssh-config`` output -> {host: {lowercased option: [values in order]}}."""
    hosts: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]  # newer Vagrant quotes paths
        if key.lower() == "host":
            current = hosts.setdefault(value, {})
        elif current is not None:
            current.setdefault(key.lower(), []).append(value)
    return hosts


def identity_for(options: dict[str, list[str]], name: str) -> Path:
    """The first IdentityFile Vagrant lists for the VM that exists on disk."""
    for candidate in options.get("identityfile", []):
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    raise HelperError(f"{name}: vagrant ssh-config lists no existing IdentityFile")


def parse_public_key(text: str, expected_type: str) -> HostKey:
    """``ssh-ed25519 AAAA... comment`` (a .pub file) -> HostKey; the type must match."""
    fields = text.split()
    if len(fields) < 2 or fields[0] != expected_type:
        raise HelperError(f"not a {expected_type} public key: {text.strip()[:80]!r}")
    return HostKey(fields[0], fields[1])


def parse_keyscan(output: str, expected_type: str) -> list[HostKey]:
    """ssh-keyscan's ``host type key`` lines -> keys of the expected type."""
    keys = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and fields[1] == expected_type:
            keys.append(HostKey(fields[1], fields[2]))
    return keys


def _run(argv: Sequence[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise HelperError(f"{what}: {argv[0]} not found") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise HelperError(f"{what} failed (exit {done.returncode}): {' / '.join(detail[-3:])}")
    return done.stdout


def keyscan(address: str, port: int, short_type: str) -> HostKey:
    """The host key the address presents on the network (what bootstrap will see)."""
    key_type = KEY_TYPES[short_type]
    out = _run(
        ["ssh-keyscan", "-T", str(KEYSCAN_TIMEOUT), "-p", str(port), "-t", short_type, address],
        f"ssh-keyscan {known_hosts_host(address, port)}",
    )
    keys = parse_keyscan(out, key_type)
    if len(keys) != 1:
        raise HelperError(f"ssh-keyscan {address}: expected one {key_type} key, got {len(keys)}")
    return keys[0]


def key_via_vagrant_ssh(ssh_config: Path, name: str, pub_path: str, short_type: str) -> HostKey:
    """The host key file as the VM itself has it, read over Vagrant's SSH connection."""
    out = _run(
        ["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", name, "cat", pub_path],
        f"{name}: reading {pub_path} over vagrant ssh",
    )
    return parse_public_key(out, KEY_TYPES[short_type])


def merge_known_hosts(existing: str, new_lines: dict[str, str]) -> str:
    """Replace the lines for the given hosts, keep every other line (comments too)."""
    kept = []
    for line in existing.splitlines():
        fields = line.split()
        hosts = set(fields[0].split(",")) if fields and not line.startswith("#") else set()
        if hosts & new_lines.keys():
            continue
        kept.append(line)
    kept.extend(new_lines[h] for h in sorted(new_lines))
    return "\n".join(kept) + "\n"


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def collect(
    targets: Iterable[Target],
    ssh_config_text: str,
    ssh_config_file: Path,
    short_type: str,
    pub_path: str,
) -> dict[Path, dict[str, str]]:
    """Copy identities; return {known_hosts file: {host field: line}}. Raises on mismatch."""
    config = parse_ssh_config(ssh_config_text)
    by_file: dict[Path, dict[str, str]] = {}
    for target in targets:
        options = config.get(target.name)
        if options is None:
            raise HelperError(f"{target.name}: not in `vagrant ssh-config` (is it up?)")
        identity = identity_for(options, target.name)
        write_atomic(target.identity_file, identity.read_bytes(), 0o600)
        from_vm = key_via_vagrant_ssh(ssh_config_file, target.name, pub_path, short_type)
        from_network = keyscan(target.address, target.port, short_type)
        if from_vm != from_network:
            raise HelperError(
                f"{target.name}: the {short_type} key at {target.address}:{target.port} is not "
                f"the VM's own {pub_path}: refusing to record it"
            )
        host = known_hosts_host(target.address, target.port)
        by_file.setdefault(target.known_hosts, {})[host] = from_vm.line_for(host)
        print(f"{target.name}: {host} {short_type} host key recorded")
        print(f"{target.name}: identity -> {target.identity_file}")
    return by_file


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY)
    parser.add_argument("--key-type", default=DEFAULT_KEY_TYPE, choices=sorted(KEY_TYPES))
    parser.add_argument(
        "--ssh-config",
        type=Path,
        help="read this file instead of running `vagrant ssh-config` (for scripting)",
    )
    parser.add_argument("--host-key-path", help="default /etc/ssh/ssh_host_<type>_key.pub")
    args = parser.parse_args(argv)
    short_type: str = args.key_type
    pub_path = args.host_key_path or f"/etc/ssh/ssh_host_{short_type}_key.pub"
    try:
        targets = targets_from_inventory(args.inventory)
        if args.ssh_config is not None:
            ssh_config_file = args.ssh_config
            text = ssh_config_file.read_text()
        else:
            if shutil.which("vagrant") is None:
                raise HelperError("vagrant not found on PATH", exit_code=2)
            text = _run(["vagrant", "ssh-config"], "vagrant ssh-config", cwd=HERE)
            ssh_config_file = targets[0].known_hosts.parent / "vagrant-ssh-config"
            write_atomic(ssh_config_file, text.encode(), 0o600)
        by_file = collect(targets, text, ssh_config_file, short_type, pub_path)
        for path, lines in by_file.items():
            existing = path.read_text() if path.exists() else ""
            write_atomic(path, merge_known_hosts(existing, lines).encode(), 0o644)
            print(f"wrote {path}")
    except HelperError as exc:
        print(f"known_hosts.py: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"known_hosts.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
