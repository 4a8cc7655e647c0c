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
import socket
import ssl
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
) -> HTTPResult:
    """One request, one response (any status). tls=None means plain HTTP.

    ``server_name`` is the name the server cert must match (and the SNI) when it differs
    from ``host``, e.g. when ``host`` is the local end of an SSH tunnel. ``context`` lets a
    caller reuse a context built by ``make_context``. ``label`` names the server in
    messages instead of ``host:port`` (a tunnel's local port means nothing to the reader).
    """
    conn: http.client.HTTPConnection
    where = label or f"{host}:{port}"
    if tls is None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    else:
        ctx = context if context is not None else make_context(tls)
        conn = _HTTPSConnection(host, port, timeout=timeout, context=ctx, server_name=server_name)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return HTTPResult(status=response.status, body=data)
    except ssl.SSLCertVerificationError as exc:
        raise HTTPCheckError(
            f"TLS: the server certificate of {where} was not accepted "
            f"({exc.verify_message}; trusted CA file {describe(tls.ca) if tls else None})",
            kind="tls-server",
            hint="the server's certificate must chain to that CA and carry the name/IP "
            f"{server_name or host} as a SAN",
        ) from exc
    except ssl.SSLError as exc:
        reason = _reason(exc)
        if (
            tls is not None
            and tls.cert is not None
            and any(a in reason.upper() for a in _CLIENT_CERT_ALERTS)
        ):
            raise HTTPCheckError(
                f"TLS: {where} refused our client certificate {describe(tls.cert)} ({reason})",
                kind="tls-client",
                hint=f"the client certificate {describe(tls.cert)} must be signed by the CA the "
                "server trusts and be valid now",
            ) from exc
        raise HTTPCheckError(
            f"TLS handshake with {where} failed: {reason} ({tls.describe() if tls else 'plain'})",
            kind="tls-server" if "CERTIFICATE_VERIFY" in reason.upper() else "connection",
            hint="is it really a TLS endpoint, and are the CA and client cert the right ones?",
        ) from exc
    except ConnectionRefusedError as exc:
        raise HTTPCheckError(
            f"connection to {where} refused",
            kind="refused",
            hint="nothing listens there: is the component running (and the tunnel up)?",
        ) from exc
    except TimeoutError as exc:
        raise HTTPCheckError(
            f"no answer from {where} within {timeout:g}s",
            kind="timeout",
            hint="the host or component is not answering; check it is up and reachable",
        ) from exc
    except http.client.HTTPException as exc:
        raise HTTPCheckError(
            f"bad HTTP exchange with {where}: {type(exc).__name__}: {exc}",
            kind="protocol",
            hint="is this the right port for the component (HTTP vs HTTPS)?",
        ) from exc
    except OSError as exc:
        raise HTTPCheckError(
            f"connection to {where} failed: {exc.strerror or exc}",
            kind="connection",
            hint="check the host is up and the port is right",
        ) from exc
    finally:
        conn.close()


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
