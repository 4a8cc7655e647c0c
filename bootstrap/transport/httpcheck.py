"""Small stdlib HTTP(S) client for health endpoints and etcd's JSON gateway.

Why the stdlib and not `requests`: this kind of machine exports REQUESTS_CA_BUNDLE /
CURL_CA_BUNDLE / SSL_CERT_FILE, and `requests` lets those override an explicit `verify=`
(psf/requests#3829). Here every trust decision is explicit: an `ssl.SSLContext` built
from the files we name, never from the environment or the system store, and `http.client`
does not read proxy variables.

Every failure is an ``HTTPCheckError`` whose ``kind`` says what went wrong (refused,
timeout, tls-server, tls-client, tls-config, connection, protocol), so callers can turn
it into their own message + hint.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bootstrap.errors import OperationError
from bootstrap.local.memfile import describe

ErrorKind = Literal[
    "refused", "timeout", "tls-server", "tls-client", "tls-config", "connection", "protocol"
]

# TLS alerts a server sends when it refuses our client certificate.
_CLIENT_CERT_ALERTS = (
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_UNKNOWN",
    "UNSUPPORTED_CERTIFICATE",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
)


class HTTPCheckError(OperationError):
    """An HTTP(S) request did not produce a response. ``kind`` classifies the failure."""

    def __init__(self, message: str, *, kind: ErrorKind, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind: ErrorKind = kind


@dataclass(frozen=True)
class ClientTLS:
    """How to speak TLS to one server.

    verify=True: the server cert must chain to ``ca`` and match the host name (or
    ``server_name`` given to the request). verify=False is only for components whose
    serving certs are self-signed (controller-manager, scheduler): callers must say why.
    """

    ca: Path | None
    cert: Path | None = None
    key: Path | None = None
    verify: bool = True

    def describe(self) -> str:
        parts = []
        if self.verify:
            parts.append(f"CA {describe(self.ca)}")
        else:
            parts.append("server cert NOT verified")
        if self.cert:
            parts.append(f"client cert {describe(self.cert)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class HTTPResult:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def summary(self, limit: int = 200) -> str:
        text = " ".join(self.text.split())
        if len(text) > limit:
            text = text[:limit] + "..."
        return f"HTTP {self.status}: {text}" if text else f"HTTP {self.status}"


# The apiserver's etcd health as any client may read it. `GET /livez/etcd` (one named check)
# needs RBAC rights that admin.conf's group (kubeadm:cluster-admins) only has once its
# ClusterRoleBinding exists, which init can create only after an apiserver answers; the
# plain health paths are granted to every client by system:public-info-viewer, and the
# verbose answer lists each check: "[+]etcd ok" or "[-]etcd failed: reason withheld".
APISERVER_LIVEZ_VERBOSE = "/livez?verbose"


def verbose_check(result: HTTPResult, name: str) -> tuple[bool, str]:
    """One named check of a ``?verbose`` health answer: (ok, what it said)."""
    for line in result.text.splitlines():
        line = line.strip()
        if line == f"[+]{name} ok":
            return True, line
        if line.startswith(f"[-]{name} "):
            return False, f"{line} (HTTP {result.status})"
    if result.status in (401, 403):
        return False, (
            f"{result.summary(120)}: this client may not read the apiserver's health "
            "(system:public-info-viewer missing?)"
        )
    return False, f"no '{name}' check in the answer: {result.summary(120)}"


def make_context(tls: ClientTLS) -> ssl.SSLContext:
    """An SSLContext from exactly the named files (no system store, no env variables)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.verify:
        if tls.ca is None:
            raise HTTPCheckError(
                "TLS verification needs a CA file",
                kind="tls-config",
                hint="pass the cluster CA (or etcd CA) certificate",
            )
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cafile=str(tls.ca))
        except (OSError, ssl.SSLError) as exc:
            raise HTTPCheckError(
                f"TLS: cannot load CA file {describe(tls.ca)}: {_reason(exc)}",
                kind="tls-config",
                hint="check that the file exists and holds a PEM certificate",
            ) from exc
    else:
        # Explicitly unverified (self-signed component certs); see callers.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert is not None or tls.key is not None:
        if tls.cert is None or tls.key is None:
            raise HTTPCheckError(
                "TLS: a client certificate needs both cert and key",
                kind="tls-config",
            )
        try:
            ctx.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
        except (OSError, ssl.SSLError) as exc:
            raise HTTPCheckError(
                f"TLS: cannot load client cert {describe(tls.cert)} / key {describe(tls.key)}: "
                f"{_reason(exc)}",
                kind="tls-config",
                hint="check both files exist, are PEM, are readable and belong together",
            ) from exc
    return ctx


def request(
    host: str,
    port: int,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    tls: ClientTLS | None,
    timeout: float,
    server_name: str | None = None,
    context: ssl.SSLContext | None = None,
    label: str | None = None,
    idempotent: bool = False,
) -> HTTPResult:
    """One request, one response (any status). tls=None means plain HTTP.

    ``server_name`` is the name the server cert must match (and the SNI) when it differs
    from ``host``, e.g. when ``host`` is the local end of an SSH tunnel. ``context`` lets a
    caller reuse a context built by ``make_context``. ``label`` names the server in
    messages instead of ``host:port`` (a tunnel's local port means nothing to the reader).

    Connections are kept alive and reused by later requests to the same server with the
    same TLS settings (see ``_IdleConnections``). A GET that fails on a reused connection
    (the server or the tunnel closed it while idle) is sent once more on a new one; other
    methods always get a new connection, so nothing is ever sent twice, unless the caller
    says the request is ``idempotent`` (a read sent as POST, as etcd's gateway wants):
    then it is treated like a GET.
    """
    where = label or f"{host}:{port}"
    key = _pool_key(host, port, tls, server_name, context)
    reusable = method == "GET" or idempotent
    conn = _IDLE.take(key) if reusable else None
    if conn is not None:
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            return _exchange(conn, key, method, path, body, headers)
        except (OSError, http.client.HTTPException):
            conn.close()  # gone while idle: a new connection below says what is wrong now
    conn = _new_connection(host, port, tls, timeout, server_name, context)
    try:
        return _exchange(conn, key, method, path, body, headers)
    except BaseException as exc:
        conn.close()
        error = _classify(exc, where, tls, server_name or host, timeout)
        if error is exc:
            raise
        raise error from exc


def _exchange(
    conn: http.client.HTTPConnection,
    key: tuple[object, ...],
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str] | None,
) -> HTTPResult:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    if response.will_close:
        conn.close()
    else:
        _IDLE.give(key, conn)
    return HTTPResult(status=response.status, body=data)


def _new_connection(
    host: str,
    port: int,
    tls: ClientTLS | None,
    timeout: float,
    server_name: str | None,
    context: ssl.SSLContext | None,
) -> http.client.HTTPConnection:
    if tls is None:
        return http.client.HTTPConnection(host, port, timeout=timeout)
    ctx = context if context is not None else context_for(tls)
    return _HTTPSConnection(host, port, timeout=timeout, context=ctx, server_name=server_name)


def _classify(
    exc: BaseException, where: str, tls: ClientTLS | None, name: str, timeout: float
) -> BaseException:
    """The HTTPCheckError for a failed exchange (anything unexpected is passed on)."""
    if isinstance(exc, HTTPCheckError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return HTTPCheckError(
            f"TLS: the server certificate of {where} was not accepted "
            f"({exc.verify_message}; trusted CA file {describe(tls.ca) if tls else None})",
            kind="tls-server",
            hint=f"the server's certificate must chain to that CA and carry the name/IP {name} "
            "as a SAN",
        )
    if isinstance(exc, ssl.SSLError):
        reason = _reason(exc)
        if (
            tls is not None
            and tls.cert is not None
            and any(a in reason.upper() for a in _CLIENT_CERT_ALERTS)
        ):
            return HTTPCheckError(
                f"TLS: {where} refused our client certificate {describe(tls.cert)} ({reason})",
                kind="tls-client",
                hint=f"the client certificate {describe(tls.cert)} must be signed by the CA the "
                "server trusts and be valid now",
            )
        return HTTPCheckError(
            f"TLS handshake with {where} failed: {reason} ({tls.describe() if tls else 'plain'})",
            kind="tls-server" if "CERTIFICATE_VERIFY" in reason.upper() else "connection",
            hint="is it really a TLS endpoint, and are the CA and client cert the right ones?",
        )
    if isinstance(exc, ConnectionRefusedError):
        return HTTPCheckError(
            f"connection to {where} refused",
            kind="refused",
            hint="nothing listens there: is the component running (and the tunnel up)?",
        )
    if isinstance(exc, TimeoutError):
        return HTTPCheckError(
            f"no answer from {where} within {timeout:g}s",
            kind="timeout",
            hint="the host or component is not answering; check it is up and reachable",
        )
    if isinstance(exc, http.client.HTTPException):
        return HTTPCheckError(
            f"bad HTTP exchange with {where}: {type(exc).__name__}: {exc}",
            kind="protocol",
            hint="is this the right port for the component (HTTP vs HTTPS)?",
        )
    if isinstance(exc, OSError):
        return HTTPCheckError(
            f"connection to {where} failed: {exc.strerror or exc}",
            kind="connection",
            hint="check the host is up and the port is right",
        )
    return exc


# --- kept-alive connections and TLS contexts --------------------------------------------
#
# A wait polls the same few endpoints every 50-250 ms and verify asks each of them again:
# a new TCP connection through the SSH tunnel, a TLS handshake and two PEM files parsed
# for every request cost more CPU than the request itself, on machines whose cores are
# busy starting the control plane. Connections stay open between requests instead.
# Reusing one is safe: a connection is bound to the socket the tunnel accepted for it, so
# it can only ever reach the server it was opened to (a closed tunnel makes it fail, and
# the GET is retried on a new connection); the TLS identity was checked when it opened.


def files_signature(tls: ClientTLS | None) -> tuple[object, ...]:
    """What a context was built from: a rewritten CA, cert or key file gets a new one."""
    if tls is None:
        return ()
    out: list[object] = []
    for path in (tls.ca, tls.cert, tls.key):
        if path is None:
            out.append(None)
            continue
        try:
            st = os.stat(path)
        except OSError:
            out.append(("missing", str(path)))  # make_context names the problem
            continue
        out.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _pool_key(
    host: str,
    port: int,
    tls: ClientTLS | None,
    server_name: str | None,
    context: ssl.SSLContext | None,
) -> tuple[object, ...]:
    return (host, port, server_name, tls, id(context), files_signature(tls))


_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def context_for(tls: ClientTLS) -> ssl.SSLContext:
    """make_context(tls), built once per set of files (a rewritten file gets a new one)."""
    key = (tls, files_signature(tls))
    with _CONTEXTS_LOCK:
        found = _CONTEXTS.get(key)
    if found is None:
        found = make_context(tls)  # raises HTTPCheckError: nothing is cached then
        with _CONTEXTS_LOCK:
            _CONTEXTS[key] = found
    return found


class _IdleConnections:
    """Open connections nobody uses right now, by server + TLS settings."""

    PER_KEY = 4  # parallel waits and verify use at most a few per endpoint

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[object, ...], list[http.client.HTTPConnection]] = {}

    def take(self, key: tuple[object, ...]) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            if _still_open(conn):
                return conn
            conn.close()

    def give(self, key: tuple[object, ...], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.PER_KEY:
                idle.append(conn)
                return
        conn.close()

    def close_all(self) -> None:
        with self._lock:
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection has nothing to read: readable means EOF or a reset (closed)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


_IDLE = _IdleConnections()


def close_idle_connections() -> None:
    """Close every kept-alive connection (when the tunnels they run through close)."""
    _IDLE.close_all()


def get(
    host: str,
    port: int,
    path: str,
    *,
    tls: ClientTLS | None,
    timeout: float,
    server_name: str | None = None,
    label: str | None = None,
) -> HTTPResult:
    return request(
        host, port, path, tls=tls, timeout=timeout, server_name=server_name, label=label
    )


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPSConnection that verifies against ``server_name`` instead of the dialled host."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        context: ssl.SSLContext,
        server_name: str | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._ssl_context = context
        self._server_name = server_name

    def connect(self) -> None:
        if self._server_name is None:
            super().connect()
            return
        # Same as HTTPSConnection.connect, but the TLS name is the server's, not the tunnel's.
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason}: {exc}"
    return str(exc)
