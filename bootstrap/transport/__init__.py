"""SSH transport (paramiko): connect, run commands, write files atomically, forward ports.

Public names: ``SSHHost``, ``connect``, ``connect_all`` and the named timeouts. No paramiko
type crosses this package's boundary; every failure is a ``bootstrap.errors.TransportError``
subclass naming the host, with a hint.

Modules: ``knownhosts`` (host-key policy), ``connection`` (connect, retries, error
mapping), ``host`` (SSHHost), ``forward`` (port forwarding), ``remote_sh`` (shell snippets).

Safety: nothing here logs or raises with secrets in it (keys, passwords, file contents).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bootstrap.errors import BootstrapError, IdentityFileError, TransportError
from bootstrap.inventory.model import Master
from bootstrap.transport.connection import (
    AUTH_TIMEOUT,
    BANNER_TIMEOUT,
    CHANNEL_OPEN_TIMEOUT,
    CONNECT_ATTEMPTS,
    DEFAULT_COMMAND_TIMEOUT,
    Endpoint,
    jump_connector,
    load_identity_file,
    open_client,
    tcp_connector,
)
from bootstrap.transport.host import SSHHost
from bootstrap.transport.knownhosts import KnownHosts
from bootstrap.transport.sshlib import paramiko

__all__ = [
    "AUTH_TIMEOUT",
    "BANNER_TIMEOUT",
    "CHANNEL_OPEN_TIMEOUT",
    "CONNECT_ATTEMPTS",
    "DEFAULT_COMMAND_TIMEOUT",
    "SSHHost",
    "connect",
    "connect_all",
]

log = logging.getLogger("bootstrap.transport")

# paramiko logs handshake failures at ERROR with tracebacks; without any handler configured
# Python's last-resort handler would print them to stderr next to our own clean error. A
# NullHandler stops that; a CLI that configures logging still receives them via propagation.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def connect(
    master: Master,
    *,
    accept_new_host_keys: bool = False,
    sudo_password: str | None = None,
) -> SSHHost:
    """One verified, authenticated connection to ``master`` (through its jump host if set).

    ``accept_new_host_keys`` (or the inventory's ``ssh.hostKeyPolicy: accept-new``) records
    unknown host keys; it never replaces a changed one. Notices about recorded keys are
    logged and kept in ``SSHHost.notices``.
    """
    ssh = master.ssh
    accept_new = accept_new_host_keys or ssh.host_key_policy == "accept-new"
    known = KnownHosts.load(ssh.known_hosts)
    notices: list[str] = []
    target = Endpoint(
        label=master.name,
        host=master.ssh_host,
        port=ssh.port,
        user=ssh.user,
        identity_file=ssh.identity_file,
        connect_timeout=ssh.connect_timeout,
    )
    jump_client: paramiko.SSHClient | None = None
    sock_factory = tcp_connector(target)
    if ssh.jump_host is not None:
        jh = ssh.jump_host
        jump_label = f"{jh.address}:{jh.port}"
        jump = Endpoint(
            label=f"{master.name} (jump host {jump_label})",
            host=jh.address,
            port=jh.port,
            user=jh.user,
            identity_file=jh.identity_file,
            connect_timeout=ssh.connect_timeout,
            identity_key="ssh.jumpHost.identityFile",
        )
        jump_client = open_client(
            jump, known, tcp_connector(jump), accept_new=accept_new, notify=notices.append
        )
        sock_factory = jump_connector(jump_client, jump_label, target)
    try:
        client = open_client(
            target, known, sock_factory, accept_new=accept_new, notify=notices.append
        )
    except BaseException:
        if jump_client is not None:
            with contextlib.suppress(Exception):
                jump_client.close()
        raise
    return SSHHost(master, client, jump=jump_client, sudo_password=sudo_password, notices=notices)


def connect_all(
    masters: Sequence[Master],
    *,
    accept_new_host_keys: bool = False,
    sudo_password: str | None = None,
    max_workers: int = 8,
) -> dict[str, SSHHost]:
    """Connect to every master in parallel (bounded pool). All or nothing: if any host
    fails, the connections that succeeded are closed and one error names every failure."""
    if not masters:
        return {}
    check_identity_files(masters)
    hosts: dict[str, SSHHost] = {}
    failures: list[tuple[str, BaseException]] = []
    with ThreadPoolExecutor(
        max_workers=max(1, min(max_workers, len(masters))), thread_name_prefix="ssh-connect"
    ) as pool:
        futures = {
            m.name: pool.submit(
                connect, m, accept_new_host_keys=accept_new_host_keys, sudo_password=sudo_password
            )
            for m in masters
        }
        for name, future in futures.items():
            try:
                hosts[name] = future.result()
            except BaseException as e:  # collected, re-raised below as one error
                failures.append((name, e))
    if not failures:
        return hosts
    for host in hosts.values():
        host.close()
    for _, error in failures:
        if not isinstance(error, BootstrapError):
            raise error  # a programming error: do not hide it behind a summary
    if len(failures) == 1:
        raise failures[0][1]
    raise combined_error(failures)


def check_identity_files(masters: Sequence[Master]) -> None:
    """Every identity file the masters name, checked once before any connection; one
    error names the file and the masters using it (not one line per master)."""
    users: dict[tuple[Path, str], list[str]] = {}
    for m in masters:
        if m.ssh.identity_file is not None:
            users.setdefault((m.ssh.identity_file, "ssh.identityFile"), []).append(m.name)
        jump = m.ssh.jump_host
        if jump is not None and jump.identity_file is not None:
            users.setdefault((jump.identity_file, "ssh.jumpHost.identityFile"), []).append(m.name)
    for (path, key), names in users.items():
        try:
            load_identity_file(path, key=key)
        except IdentityFileError as e:
            raise IdentityFileError(
                f"{e.message} (used by {', '.join(names)})", hint=e.hint
            ) from None


def combined_error(failures: list[tuple[str, BaseException]]) -> TransportError:
    """One error naming every failed host; the common type when all failed the same way
    (e.g. every key unknown), so callers can still tell what happened."""
    errors = [e for _, e in failures if isinstance(e, BootstrapError)]
    kinds = {type(e) for e in errors}
    cls: type[TransportError] = TransportError
    if len(kinds) == 1:
        only = kinds.pop()
        if issubclass(only, TransportError):
            cls = only
    lines = [f"could not connect to {len(failures)} hosts:"]
    # The error's own text already starts with the host when it names one ("m1: ...").
    lines += [f"  {_named(name, e)}" for name, e in failures]
    hints = list(dict.fromkeys(e.hint for e in errors if e.hint))
    # One hint per line (the CLI indents them), never several hosts' hints on one line.
    return cls("\n".join(lines), hint="\n".join(hints) if hints else None)


def _named(name: str, error: BaseException) -> str:
    """The error's text led by the host's name, once ("m1: ...", not "m1: m1: ...")."""
    text = str(error)
    return text if text.startswith((f"{name}:", f"{name} (")) else f"{name}: {text}"
