"""Opening one authenticated, host-key-verified paramiko connection (optionally via a jump host).

Everything paramiko or the socket layer raises is turned into one of our errors here,
naming the host; nothing paramiko-typed leaves the transport package.

Safety: no secret is ever logged or put into an error message: no key material, no
passwords, no file contents. Errors name paths, users, hosts and fingerprints only.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.errors import (
    AuthenticationFailed,
    HostUnreachable,
    IdentityFileError,
    OperationTimeout,
    TransportError,
)
from bootstrap.transport.knownhosts import (
    KnownHosts,
    KnownHostsPolicy,
    check_not_revoked,
    fingerprint,
    host_key_name,
    mismatch_error,
)
from bootstrap.transport.sshlib import paramiko
from bootstrap.transport.tcpnodelay import low_latency

log = logging.getLogger("bootstrap.transport")

# --- named timeouts (seconds) ----------------------------------------------------------
# TCP connect comes from the inventory (ssh.connect_timeout, default 10 s).
BANNER_TIMEOUT = 15.0  # server's "SSH-2.0-..." line after TCP connect (sshd doing DNS)
AUTH_TIMEOUT = 20.0  # the whole user-auth exchange (an agent may be slow to sign)
CHANNEL_OPEN_TIMEOUT = 15.0  # opening a session, SFTP or direct-tcpip channel
DEFAULT_COMMAND_TIMEOUT = 300.0  # a remote command, unless the caller names its own
KEEPALIVE_INTERVAL = 15  # SSH keepalives so long waits notice a dead peer

# --- retries: only for transient failures before authentication ------------------------
CONNECT_ATTEMPTS = 3  # refused / timed out / EOF while reading the banner
RETRY_JITTER = (0.2, 0.6)  # seconds, uniform, between attempts


class _Transient(Exception):
    """A failed attempt worth repeating; carries the error to raise if none is left."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Endpoint:
    label: str  # how errors name it: the master's name (or "m1 via jump host ...")
    host: str
    port: int
    user: str
    identity_file: Path | None
    connect_timeout: float
    identity_key: str = "ssh.identityFile"  # the inventory key that names identity_file


SockFactory = Callable[[], Any]  # returns a connected socket or a direct-tcpip channel


def tcp_connector(ep: Endpoint) -> SockFactory:
    def open_socket() -> socket.socket:
        try:
            # No-delay, quick-ACK: without it a tunnelled request stalls 40 ms at random.
            return low_latency(
                socket.create_connection((ep.host, ep.port), timeout=ep.connect_timeout)
            )
        except socket.gaierror as e:
            raise HostUnreachable(
                f"cannot resolve {ep.host}: {e.strerror}",
                host=ep.label,
                hint="check masters[].sshHost (or address) in the inventory, and DNS",
            ) from None
        except ConnectionRefusedError:
            raise _Transient(
                HostUnreachable(
                    f"connection refused by {ep.host}:{ep.port}",
                    host=ep.label,
                    hint="is sshd running and listening on that port (ssh.port)?",
                )
            ) from None
        except TimeoutError:
            raise _Transient(
                HostUnreachable(
                    f"no answer from {ep.host}:{ep.port} within {ep.connect_timeout:g} s",
                    host=ep.label,
                    hint="check the address, routing and firewalls; raise ssh.connectTimeout "
                    "for slow links",
                )
            ) from None
        except OSError as e:
            raise HostUnreachable(
                f"cannot connect to {ep.host}:{ep.port}: {e.strerror or e}",
                host=ep.label,
                hint="check the address and routing"
                + (
                    " (no route to host)"
                    if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
                    else ""
                ),
            ) from None

    return open_socket


def jump_connector(jump: paramiko.SSHClient, jump_label: str, target: Endpoint) -> SockFactory:
    """A direct-tcpip channel from the jump host to the target, used as the target's socket."""

    def open_channel() -> paramiko.Channel:
        transport = jump.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(f"connection to jump host {jump_label} is gone", host=target.label)
        try:
            return transport.open_channel(
                "direct-tcpip",
                (target.host, target.port),
                ("127.0.0.1", 0),
                timeout=CHANNEL_OPEN_TIMEOUT,
            )
        except paramiko.ChannelException as e:
            raise _Transient(
                HostUnreachable(
                    f"jump host {jump_label} could not open a connection to "
                    f"{target.host}:{target.port}: {e.text}",
                    host=target.label,
                    hint="check that the jump host can reach the master's sshHost (or "
                    "address) and ssh.port, and that its sshd allows TCP forwarding",
                )
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise TransportError(
                f"jump host {jump_label} failed to open a channel to "
                f"{target.host}:{target.port}: {e}",
                host=target.label,
            ) from None

    return open_channel


IDENTITY_HINT = "check {key} (or masters[].ssh.identityFile) in the inventory"
# An RSA-16384 key in PEM is about 12 KiB; a larger file is not a key and is not read whole.
MAX_IDENTITY_BYTES = 64 * 1024


def check_identity_file(
    path: Path, *, key: str = "ssh.identityFile", host: str | None = None
) -> Path:
    """What OpenSSH checks before it uses a private key, checked before any connection:
    the file exists, is a regular file, and is not accessible by others when it is ours
    (ssh refuses it: "UNPROTECTED PRIVATE KEY FILE"). Returns the expanded path."""
    expanded = path.expanduser()
    hint = IDENTITY_HINT.format(key=key)
    try:
        st = expanded.stat()
    except FileNotFoundError:
        raise IdentityFileError(
            f"identity file {expanded} does not exist", host=host, hint=hint
        ) from None
    except OSError as e:
        raise IdentityFileError(
            f"cannot read identity file {expanded}: {e.strerror}", host=host, hint=hint
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise IdentityFileError(
            f"identity file {expanded} is not a regular file", host=host, hint=hint
        )
    if st.st_size > MAX_IDENTITY_BYTES:
        raise IdentityFileError(
            f"identity file {expanded} holds {st.st_size} bytes: too large to be a private key",
            host=host,
            hint=hint,
        )
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        raise IdentityFileError(
            f"identity file {expanded} is accessible by others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}): OpenSSH refuses such a private key",
            host=host,
            hint=f"chmod 600 {expanded}",
        )
    return expanded


def load_identity_file(
    path: Path, *, key: str = "ssh.identityFile", host: str | None = None
) -> paramiko.PKey:
    """The private key at ``path``, after check_identity_file; IdentityFileError (exit 2)
    when it cannot be used. Local only: called for every file before any connection."""
    path = check_identity_file(path, key=key, host=host)
    hint = IDENTITY_HINT.format(key=key)
    try:
        return paramiko.PKey.from_path(path)
    # cryptography signals an encrypted key without a password with TypeError.
    except (paramiko.PasswordRequiredException, TypeError):
        raise IdentityFileError(
            f"identity file {path} is encrypted",
            host=host,
            hint=f"load it into ssh-agent (ssh-add) and leave {key} unset",
        ) from None
    except OSError as e:
        raise IdentityFileError(
            f"cannot read identity file {path}: {e.strerror}", host=host, hint=hint
        ) from None
    except (paramiko.SSHException, ValueError) as e:
        reason = str(e).split(". See https://", 1)[0]  # cryptography's FAQ link: noise here
        raise IdentityFileError(
            f"cannot load identity file {path} as a private key: {reason}", host=host, hint=hint
        ) from None


def _load_identity(ep: Endpoint) -> paramiko.PKey | None:
    if ep.identity_file is None:
        return None
    return load_identity_file(ep.identity_file, key=ep.identity_key, host=ep.label)


def _attempt(
    ep: Endpoint,
    known: KnownHosts,
    sock_factory: SockFactory,
    *,
    accept_new: bool,
    notify: Callable[[str], None],
) -> paramiko.SSHClient:
    """One connection attempt: reach the host, verify its key, authenticate. A failure
    worth repeating raises _Transient; anything else raises the error to report."""
    pkey = _load_identity(ep)
    sock = sock_factory()
    client = _client_trusting(ep, known, accept_new=accept_new, notify=notify)
    try:
        _handshake(client, ep, pkey, sock)
        _check_session(client, ep, known)
    except (paramiko.SSHException, EOFError, OSError) as e:
        client.close()
        raise _classify(e, ep, known, pkey) from None
    except BaseException:  # our host-key errors (HostKeyUnknown, HostKeyMismatch) as they are
        client.close()
        raise
    return client


def _client_trusting(
    ep: Endpoint, known: KnownHosts, *, accept_new: bool, notify: Callable[[str], None]
) -> paramiko.SSHClient:
    """A client that knows the inventory's host keys; an unknown key goes to our policy
    (refuse, or record it with --accept-new-host-keys)."""
    client = paramiko.SSHClient()
    for name, key in known.entries:
        client.get_host_keys().add(name, key.get_name(), key)
    client.set_missing_host_key_policy(
        KnownHostsPolicy(
            known,
            host_label=ep.label,
            host=ep.host,
            port=ep.port,
            accept_new=accept_new,
            notify=notify,
        )
    )
    return client


def _handshake(
    client: paramiko.SSHClient, ep: Endpoint, pkey: paramiko.PKey | None, sock: Any
) -> None:
    """SSH over ``sock``: banner, key exchange (host key checked), user authentication
    with the identity file, or the agent and default keys when there is none."""
    client.connect(
        ep.host,
        port=ep.port,
        username=ep.user,
        pkey=pkey,
        allow_agent=pkey is None,
        look_for_keys=pkey is None,
        sock=sock,
        timeout=ep.connect_timeout,
        banner_timeout=BANNER_TIMEOUT,
        auth_timeout=AUTH_TIMEOUT,
        channel_timeout=CHANNEL_OPEN_TIMEOUT,
    )


def _check_session(client: paramiko.SSHClient, ep: Endpoint, known: KnownHosts) -> None:
    """After the handshake: refuse a @revoked host key; keepalives for long waits."""
    transport = client.get_transport()
    assert transport is not None
    check_not_revoked(known, ep.label, transport.get_remote_server_key())
    transport.set_keepalive(KEEPALIVE_INTERVAL)


def _classify(
    e: BaseException, ep: Endpoint, known: KnownHosts, pkey: paramiko.PKey | None
) -> TransportError | _Transient:
    """What a failed handshake means for the operator, and whether to try again."""
    where = f"{ep.host}:{ep.port}"
    if isinstance(e, paramiko.BadHostKeyException):
        name = host_key_name(ep.host, ep.port)
        return mismatch_error(ep.label, known.path, name, e.key, [e.expected_key])
    if isinstance(e, paramiko.AuthenticationException):
        key_text = str(ep.identity_file) if ep.identity_file else "ssh-agent / default keys"
        return AuthenticationFailed(
            f"authentication failed for {ep.user}@{where} with {key_text}"
            + (f" ({pkey.get_name()} {fingerprint(pkey)})" if pkey else "")
            + f": {e}",
            host=ep.label,
            hint=f"check that the public key is in {ep.user}'s authorized_keys on the host, "
            "and ssh.user / ssh.identityFile in the inventory",
        )
    if isinstance(e, TimeoutError):
        return _Transient(
            OperationTimeout(
                f"SSH handshake with {where} timed out",
                host=ep.label,
                hint="the host accepted TCP but did not complete SSH in time; is sshd overloaded?",
            )
        )
    if isinstance(e, EOFError):
        return _Transient(
            HostUnreachable(
                f"{where} closed the connection during the SSH handshake",
                host=ep.label,
                hint="check sshd's log on the host (MaxStartups, AllowUsers, ...)",
            )
        )
    if isinstance(e, paramiko.SSHException):
        text = str(e)
        if "banner" in text.lower():
            return _Transient(
                HostUnreachable(
                    f"no SSH banner from {where}: {text}",
                    host=ep.label,
                    hint="is that port an sshd? is the host still booting?",
                )
            )
        return TransportError(
            f"SSH handshake with {where} failed: {text}",
            host=ep.label,
            hint="check the sshd's algorithms and log on the host",
        )
    return _Transient(HostUnreachable(f"connection to {where} failed: {e}", host=ep.label))


def open_client(
    ep: Endpoint,
    known: KnownHosts,
    sock_factory: SockFactory,
    *,
    accept_new: bool,
    notify: Callable[[str], None],
    attempts: int = CONNECT_ATTEMPTS,
) -> paramiko.SSHClient:
    """Connect, retrying transient failures with jitter; auth and host-key errors fail at once."""
    for attempt in range(1, attempts + 1):
        try:
            return _attempt(ep, known, sock_factory, accept_new=accept_new, notify=notify)
        except _Transient as t:
            if attempt == attempts:
                raise t.error from None
            log.info("%s: attempt %d/%d failed (%s), retrying", ep.label, attempt, attempts, t)
            time.sleep(random.uniform(*RETRY_JITTER))
    raise AssertionError("unreachable")
