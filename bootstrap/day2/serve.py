"""`bootstrap serve`: the HTTPS manifest source each master's kubelet polls.

GET /nodes/<name>/pods answers the node's published PodList (bootstrap.workflow.delivery) as
YAML, or JSON with ``?format=json`` / ``Accept: application/json``. Each node has its own
bearer token (``<state>/serve-tokens.json``, 0600): no or an unknown token -> 401, another
node's token -> 403, so a node reads only its own document. Nothing published yet -> 404
(the kubelet keeps what it runs). GET /healthz needs no token and says only "ok".

The server certificate is issued from the cluster CA for the listen address (kept in
``<state>/serve/``, key 0600) so kubelets verify it with the CA they already trust. The
documents are re-read when the inventory or the published files change (polled), or on
SIGHUP. The access log names the client, the node the token belongs to, the path and the
status: never the token or the Authorization header.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509

from bootstrap.errors import InputError, echo
from bootstrap.inventory.model import Inventory
from bootstrap.pki import ClusterPKI
from bootstrap.pki.issue import issue_leaf
from bootstrap.pki.keys import generate_key, private_key_pem
from bootstrap.pki.store import ensure_dir, read_optional, signed_by, write_atomic
from bootstrap.pki.table import CA, SERVER_AUTH, CertSpec
from bootstrap.workflow import delivery

log = logging.getLogger("bootstrap.serve")

SERVE_DIR = "serve"
CERT_DAYS = 365
RENEW_BEFORE = timedelta(days=30)
RELOAD_POLL = 0.5


# --- listen address and certificate ---------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """'ADDR:PORT' or '[v6]:PORT' -> (addr, port). A concrete address: it goes in the cert."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    port_ok = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not sep or not host or not port_ok or not 0 <= int(port_text) <= 65535:
        raise InputError(
            f"--listen must be ADDR:PORT, got {echo(text)}", hint="e.g. 10.213.5.1:8443"
        )
    if host in ("0.0.0.0", "::"):
        raise InputError(
            f"--listen {echo(text)}: give the address the masters reach (it is the cert's SAN)",
            hint="in the lab: the bridge address 10.213.<instance>.1",
        )
    return host, int(port_text)


def _server_spec(address: str) -> CertSpec:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return CertSpec("serve/server", CA, "bootstrap-serve", usages=(SERVER_AUTH,),
                        dns_names=(address,))
    return CertSpec("serve/server", CA, "bootstrap-serve", usages=(SERVER_AUTH,),
                    ip_addresses=(ip,))


def _cert_fits(cert: x509.Certificate, ca: x509.Certificate, address: str, now: datetime) -> bool:
    if not signed_by(cert, ca) or cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    names = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    names |= set(san.get_values_for_type(x509.DNSName))
    return address in names


def ensure_server_cert(
    pki: ClusterPKI, state_dir: Path, address: str, algorithm: str, now: datetime | None = None
) -> tuple[Path, Path]:
    """The serving cert for ``address``, signed by the cluster CA; reused while it fits."""
    moment = now or datetime.now(UTC)
    directory = state_dir / SERVE_DIR
    crt, key = directory / "server.crt", directory / "server.key"
    ca = pki.ca()
    existing = read_optional(crt)
    if existing is not None and key.exists():
        try:
            cert = x509.load_pem_x509_certificate(existing)
        except ValueError:
            cert = None
        if cert is not None and _cert_fits(cert, ca.cert, address, moment):
            return crt, key
    if ca.key is None:
        raise InputError("the cluster CA key is not in the state dir: cannot issue a serving cert")
    new_key = generate_key(algorithm)
    cert = issue_leaf(
        _server_spec(address), new_key, ca.cert, ca.key,
        moment - timedelta(minutes=5), moment + timedelta(days=CERT_DAYS),
    )
    ensure_dir(directory)
    write_atomic(key, private_key_pem(new_key), 0o600)
    from cryptography.hazmat.primitives.serialization import Encoding

    write_atomic(crt, cert.public_bytes(Encoding.PEM), 0o644)
    return crt, key


# --- what is served ----------------------------------------------------------------------------


@dataclass
class Documents:
    """Nodes, tokens and published documents, swapped whole on reload."""

    nodes: tuple[str, ...] = ()
    tokens: dict[str, str] = field(default_factory=dict, repr=False)
    documents: dict[str, bytes] = field(default_factory=dict, repr=False)

    def node_for(self, token: str) -> str | None:
        found = None
        for node, value in self.tokens.items():  # compare every one: no early exit timing
            if hmac.compare_digest(value.encode(), token.encode()) and node in self.nodes:
                found = node
        return found


class Source:
    """Reads the inventory and the state dir; ``reload_if_changed`` is cheap to call often."""

    def __init__(self, inventory_path: Path, state_dir: Path) -> None:
        self.inventory_path = inventory_path
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._fingerprint: tuple[Any, ...] | None = None
        self.current = Documents()

    def _stat(self, path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def fingerprint(self, nodes: tuple[str, ...]) -> tuple[Any, ...]:
        paths = [self.inventory_path, delivery.tokens_path(self.state_dir)]
        paths += [delivery.published_path(self.state_dir, n) for n in nodes]
        return tuple(self._stat(p) for p in paths)

    def load_inventory(self) -> Inventory:
        from bootstrap.inventory import load

        return load(self.inventory_path)

    def reload(self) -> Documents:
        inventory = self.load_inventory()
        nodes = tuple(m.name for m in inventory.masters)
        tokens = delivery.ensure_tokens(self.state_dir, nodes)
        documents = {}
        for node in nodes:
            path = delivery.published_path(self.state_dir, node)
            data = read_optional(path)
            if data is not None:
                delivery.parse_document(data, path, node)  # served as YAML too: must parse
                documents[node] = data
        with self._lock:
            self.current = Documents(nodes, tokens, documents)
            self._fingerprint = self.fingerprint(nodes)
        return self.current

    def reload_if_changed(self, force: bool = False) -> bool:
        with self._lock:
            nodes, before = self.current.nodes, self._fingerprint
        if not force and self.fingerprint(nodes) == before:
            return False
        try:
            docs = self.reload()
        except Exception as exc:  # a half-edited inventory must not take the server down
            log.error("reload failed, still serving the previous documents: %s", exc)
            with self._lock:
                self._fingerprint = self.fingerprint(nodes)
            return False
        log.info("reloaded: %d node(s), %d published document(s)",
                 len(docs.nodes), len(docs.documents))
        return True

    def snapshot(self) -> Documents:
        with self._lock:
            return self.current


# --- HTTP --------------------------------------------------------------------------------------


class ManifestServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], source: Source) -> None:
        self.source = source
        self.fetch_lock = threading.Lock()
        family_v6 = ":" in address[0]
        if family_v6:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line for a connection that broke (failed TLS handshake, client gone).

        The stdlib prints a traceback to stderr here; for a server that is an access
        event, not a bug, and the operator should see it as one line.
        """
        exc = sys.exc_info()[1]
        log.warning("%s: connection ended: %s", client_address[0], exc or "unknown error")


class Handler(BaseHTTPRequestHandler):
    server: ManifestServer
    server_version = "bootstrap-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a connection may idle (also bounds the TLS handshake)

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        self.send_response_only(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._access(code, len(body))

    def _access(self, code: int, size: int) -> None:
        path = urllib.parse.urlsplit(self.path).path  # the query is never logged either
        log.info('%s node=%s "%s %s" %d %d', self.client_address[0],
                 getattr(self, "_node", "-"), self.command, path, code, size)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's own lines (they would include the raw request line)."""

    def log_error(self, format: str, *args: Any) -> None:
        log.warning("%s: %s", self.client_address[0], format % args)

    def _token(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return value.strip()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/healthz":
            self._send(200, b"ok\n")
            return
        parts = url.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "nodes" or parts[2] != "pods":
            self._send(404, b"not found\n")
            return
        docs = self.server.source.snapshot()
        token = self._token()
        node = docs.node_for(token) if token else None
        self._node = node or "-"
        if node is None:
            challenge = {"WWW-Authenticate": 'Bearer realm="bootstrap"'}
            self._send(401, b"unauthorized\n", extra=challenge)
            return
        if parts[1] != node:
            self._send(403, b"forbidden: a node reads only its own document\n")
            return
        document = docs.documents.get(node)
        if document is None:
            self._send(404, b"nothing published for this node yet\n")
            return
        query = urllib.parse.parse_qs(url.query)
        wants_json = query.get("format") == ["json"] or "application/json" in (
            self.headers.get("Accept") or ""
        )
        if wants_json:
            self._send(200, document, "application/json")
        else:
            self._send(200, delivery.as_yaml(document), "application/yaml")
        if self.command == "GET":
            with self.server.fetch_lock:
                delivery.record_fetch(self.server.source.state_dir, node, delivery.digest(document))


def make_server(
    inventory_path: Path, state_dir: Path, listen: str, pki: ClusterPKI, algorithm: str
) -> ManifestServer:
    import ssl

    host, port = parse_listen(listen)
    source = Source(inventory_path, state_dir)
    source.reload()
    crt, key = ensure_server_cert(pki, state_dir, host, algorithm)
    server = ManifestServer((host, port), source)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(crt), str(key))
    # Handshake in the handler thread (first read), not in accept(): a slow or silent
    # client must not stall every other node's poll.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    return server


def url_of(server: ManifestServer) -> str:
    raw, port = server.server_address[:2]
    host = raw.decode() if isinstance(raw, bytes) else str(raw)
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}"


def run(server: ManifestServer, stop: threading.Event, reload: threading.Event) -> None:
    """Serve until ``stop``; re-read documents when files change or ``reload`` is set."""
    thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    thread.start()
    try:
        while not stop.is_set():
            forced = reload.wait(RELOAD_POLL)
            if forced:
                reload.clear()
                log.info("SIGHUP: reloading")
            server.source.reload_if_changed(force=forced)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

