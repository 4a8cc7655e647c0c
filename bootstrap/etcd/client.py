"""The one place that talks to etcd. Returns our own types; raises only EtcdError.

Two ways in, both on the member's client port with the same client certificate:

- etcd's JSON gateway (grpc-gateway, path prefix /v3/ since 3.4) over the stdlib's HTTPS
  for everything but snapshots: member list, status and alarms (read on kept-alive
  connections, see transport/httpcheck.py) and member add as learner, promote and remove.
  Gateway IDs and counters are uint64 as decimal strings; fields at their zero value are
  left out. The gateway names every field etcd 3.4+ has (``isLearner``,
  ``raftAppliedIndex``, ``errors``), so a learner is never reported as a voter.
- gRPC through `pyetcd` (etcd-sdk-python) only for the snapshot stream. grpc, pyetcd and
  protobuf are imported on first use: ~0.15 s of import CPU that verify, status and the
  waits of init no longer pay (measured on the lab; bench/ shows verify and re-run).

Every failure becomes ``EtcdError`` (message + hint, naming the endpoint); TLS failures
say "TLS" and name the certificate file that was used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

# grpc's C core logs every failed TLS handshake to stderr at INFO unless told otherwise;
# our errors already say what happened. Only a default: an explicit setting wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from bootstrap.errors import EtcdError, shorten
from bootstrap.local.memfile import describe
from bootstrap.manifests.components import ETCD_LIVEZ_READYZ_SINCE
from bootstrap.transport import httpcheck

T = TypeVar("T")


def _grpc() -> tuple[Any, Any, Any]:
    """(grpc, pyetcd, pyetcd.etcdrpc), imported on first use (snapshots only)."""
    import grpc  # type: ignore[import-untyped]
    import pyetcd
    from pyetcd import etcdrpc

    return grpc, pyetcd, etcdrpc


_ALARM_KINDS = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}

# What etcd answers (verbatim server error strings, etcd/server/etcdserver/api/v3rpc/rpctypes).
_ERR_LEARNER_NOT_READY = "can only promote a learner member which is in sync with leader"
_ERR_NOT_LEARNER = "can only promote a learner member"
_ERR_PEER_URL_EXISTS = "peer urls already exists"
_ERR_MEMBER_ID_EXISTS = "member id already exist"
_ERR_MEMBER_NOT_FOUND = "member not found"
_ERR_TOO_MANY_LEARNERS = "too many learner members"

_TLS_MARKERS = ("handshake", "ssl", "tls", "certificate", "peer name", "tsi_data_corrupted")
# With TLS 1.3 (etcd 3.6+) a server checks the client certificate after the client has
# finished its handshake; its refusal reaches gRPC as a record it cannot decrypt
# ("Unwrap failed (TSI_DATA_CORRUPTED)"), not as a certificate alert.
_TLS13_CLIENT_REFUSAL = "TSI_DATA_CORRUPTED"
# gRPC's words for a connection the peer reset or closed (before or during the handshake).
_CUT_MARKERS = ("connection reset by peer", "socket closed", "end of file", "eof")
_CLIENT_CERT_ALERTS = (
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
)


class EtcdUnreachable(EtcdError):
    """The member did not answer. ``kind`` is what was observed, for messages that must
    name the cause: "refused" (nothing listens), "closed" (the connection was cut before
    TLS completed: through an SSH tunnel, what a refused port on the master looks like),
    "timeout" (no answer: a stopped or partitioned member), "tls" (the handshake failed),
    "unavailable" (anything else gRPC could not reach)."""

    def __init__(self, message: str, *, kind: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


class LearnerNotReady(EtcdError):
    """Promote refused: the learner has not caught up with the leader yet. Retry later."""


class MemberNotFound(EtcdError):
    """The member ID is not (or no longer) in the cluster."""


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Member:
    id: int
    name: str  # "" for a member that was added but has not started yet
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @property
    def hex_id(self) -> str:
        """The form etcdctl prints and accepts."""
        return f"{self.id:x}"

    @property
    def started(self) -> bool:
        return bool(self.name)


@dataclass(frozen=True)
class Status:
    member_id: int  # the member that answered
    leader_id: int  # 0: it knows no leader
    raft_index: int
    raft_term: int
    raft_applied_index: int | None  # None when the server does not report it (< 3.4)
    version: str
    db_size: int
    errors: tuple[str, ...]
    is_learner: bool
    revision: int  # store revision at the time of the answer (response header)


@dataclass(frozen=True)
class Alarm:
    member_id: int
    kind: str  # "NOSPACE", "CORRUPT", or "ALARM<n>" for one we do not know


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    size: int  # bytes written, including etcd's trailing sha256
    sha256: str  # of the whole file, as `sha256sum` would print it
    revision: int  # highest store revision inside the snapshot (as `etcdutl snapshot status`)
    hash_verified: bool  # etcd's embedded checksum was present and matched


class _SharedChannels:
    """gRPC channels kept open between EtcdClient objects for the same member and files.

    Only snapshots use gRPC now (reads go through the gateway's kept-alive HTTPS
    connections); a channel is still opened once per member and files, and one that
    failed once is retired, never handed out again (no inherited reconnect back-off).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[object, ...], Any] = {}
        self._retired: list[Any] = []

    def get(self, key: tuple[object, ...], open_channel: Callable[[], Any]) -> tuple[Any, bool]:
        """(the channel's client, whether it was open already)."""
        with self._lock:
            found = self._open.get(key)
        if found is not None:
            return found, True
        client = open_channel()
        with self._lock:
            self._open.setdefault(key, client)
            if self._open[key] is not client:
                self._retired.append(client)  # another thread opened one at the same time
        return client, False

    def retire(self, key: tuple[object, ...], client: Any) -> None:
        with self._lock:
            if self._open.get(key) is client:
                del self._open[key]
                self._retired.append(client)

    def close_all(self) -> None:
        with self._lock:
            clients = [*self._open.values(), *self._retired]
            self._open.clear()
            self._retired.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


_CHANNELS = _SharedChannels()


def close_shared_channels() -> None:
    """Close every kept channel (when the tunnels they run through close)."""
    _CHANNELS.close_all()


class EtcdClient:
    """A connection to one etcd member (through a tunnel: host 127.0.0.1, the local port).

    TLS is always fully verified against ``tls.ca``; ``server_name`` names the SAN to
    verify when it is not ``host`` (the etcd server certs carry 127.0.0.1, so tunnels
    need no override). ``label`` names the member in messages instead of ``host:port``
    (a local tunnel port means nothing to the reader; "m2 (10.0.0.12:2379)" does).
    """

    def __init__(
        self,
        host: str,
        port: int,
        tls: TLSFiles,
        *,
        timeout: float = 5.0,
        server_name: str | None = None,
        label: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.timeout = timeout
        self.server_name = server_name
        self.endpoint = f"{_url_host(host)}:{port}"
        self.where = f"etcd on {label}" if label else f"etcd at {self.endpoint}"
        self._gateway_tls = httpcheck.ClientTLS(ca=tls.ca, cert=tls.cert, key=tls.key)
        try:
            # Loads and checks the three files (PEM, key matches cert) before any network.
            self._ssl_context = httpcheck.context_for(self._gateway_tls)
        except httpcheck.HTTPCheckError as exc:
            raise EtcdError(exc.message, hint=exc.hint) from None
        self._key = (host, port, server_name, httpcheck.files_signature(self._gateway_tls))
        self._client: Any = None  # the gRPC channel's client, opened for a snapshot only

    def _channel(self) -> Any:
        if self._client is None:
            self._client = _CHANNELS.get(self._key, self._open_channel)[0]
        return self._client

    def _open_channel(self) -> Any:
        host, port, server_name, tls = self.host, self.port, self.server_name, self.tls
        _grpc_module, pyetcd, _etcdrpc = _grpc()
        options: list[tuple[str, Any]] = [
            # A tunnel endpoint is loopback: an http_proxy from the environment must never apply.
            ("grpc.enable_http_proxy", 0),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        try:
            return pyetcd.client(
                host=_url_host(host),
                port=port,
                ca_cert=str(tls.ca),
                cert_key=str(tls.key),
                cert_cert=str(tls.cert),
                timeout=self.timeout,
                grpc_options=options,
            )
        except (OSError, ValueError) as exc:
            raise EtcdError(
                f"cannot set up the etcd client for {self.where}: {exc}",
                hint=f"check the TLS files {describe(tls.ca)}, {describe(tls.cert)}, "
                f"{describe(tls.key)}",
            ) from None

    # --- context manager --------------------------------------------------------------

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to do: the channel stays open for the next client of this member (see
        _SharedChannels); ``close_shared_channels`` ends them with the tunnels."""

    # --- reads (JSON gateway, kept-alive connections) ----------------------------------

    def members(self) -> list[Member]:
        doc = self._gateway("member list", "/v3/cluster/member/list", {}, read_only=True)
        return [_member_from_json(m) for m in _field(doc, "members", list, [])]

    def status(self) -> Status:
        doc = self._gateway("status", "/v3/maintenance/status", {}, read_only=True)
        header = _field(doc, "header", dict, {})
        applied = doc.get("raftAppliedIndex")  # absent before etcd 3.4 (and when 0)
        return Status(
            member_id=_uint(header, "member_id"),
            leader_id=_uint(doc, "leader"),
            raft_index=_uint(doc, "raftIndex"),
            raft_term=_uint(doc, "raftTerm"),
            raft_applied_index=_uint(doc, "raftAppliedIndex") if applied is not None else None,
            version=str(_field(doc, "version", str, "")),
            db_size=_uint(doc, "dbSize"),
            errors=tuple(str(e) for e in _field(doc, "errors", list, [])),
            is_learner=bool(_field(doc, "isLearner", bool, False)),
            revision=_uint(header, "revision"),
        )

    def alarms(self) -> list[Alarm]:
        """Active alarms of the whole cluster. Goes through raft: needs a leader."""
        doc = self._gateway(
            "alarm list", "/v3/maintenance/alarm", {"action": "GET", "memberID": "0"},
            read_only=True,
        )
        alarms = []
        for a in _field(doc, "alarms", list, []):
            if not isinstance(a, dict):
                raise _unexpected(doc)
            kind = a.get("alarm", "NONE")  # the enum's name; a number from other gateways
            alarms.append(
                Alarm(
                    member_id=_uint(a, "memberID"),
                    kind=_ALARM_KINDS.get(kind, f"ALARM{kind}")
                    if isinstance(kind, int)
                    else str(kind),
                )
            )
        return alarms

    # --- membership -------------------------------------------------------------------

    def add_learner(self, peer_url: str) -> tuple[Member, list[Member]]:
        """Add a learner with this peer URL; if a member already has it, return that one.

        Idempotent on purpose: a re-run after an interrupted join must not add twice.
        etcd answers a repeated add with "Peer URLs already exists" or (3.5) "member ID
        already exist"; both mean the URL is taken, so we look the member up.
        """
        try:
            doc = self._gateway(
                "member add", "/v3/cluster/member/add", {"peerURLs": [peer_url], "isLearner": True}
            )
        except _GatewayRejected as exc:
            lowered = exc.server_message.lower()
            if _ERR_PEER_URL_EXISTS in lowered or _ERR_MEMBER_ID_EXISTS in lowered:
                current = self.members()
                for m in current:
                    if peer_url in m.peer_urls:
                        return m, current
            if _ERR_TOO_MANY_LEARNERS in lowered:
                raise EtcdError(
                    f"{self.where} refused a new learner: {exc.server_message}",
                    hint="etcd allows one learner at a time: promote or remove the existing "
                    "learner first (see `bootstrap status`)",
                ) from None
            raise
        member = _member_from_json(doc.get("member", {}))
        members = [_member_from_json(m) for m in doc.get("members", [])]
        return member, members

    def promote(self, member_id: int) -> None:
        """Promote a learner to voter. Raises LearnerNotReady while it is catching up.

        Promoting a member that is already a voter succeeds (idempotent re-runs).
        """
        try:
            self._gateway("member promote", "/v3/cluster/member/promote", {"ID": str(member_id)})
        except _GatewayRejected as exc:
            lowered = exc.server_message.lower()
            if _ERR_LEARNER_NOT_READY in lowered:
                raise LearnerNotReady(
                    f"learner {member_id:x} is not in sync with the leader yet",
                    hint="the new member must be running and have caught up; retry until the "
                    "promote timeout (timeouts.etcdPromote in the inventory)",
                ) from None
            if _ERR_NOT_LEARNER in lowered:
                return  # already a voter
            if _ERR_MEMBER_NOT_FOUND in lowered:
                raise MemberNotFound(
                    f"member {member_id:x} is not in the cluster ({self.where})",
                    hint="list the members (`bootstrap status`); it may have been removed",
                ) from None
            raise

    def remove(self, member_id: int) -> None:
        """Remove a member (voter or learner). MemberNotFound when it is not there."""
        try:
            self._gateway("member remove", "/v3/cluster/member/remove", {"ID": str(member_id)})
        except _GatewayRejected as exc:
            if _ERR_MEMBER_NOT_FOUND in exc.server_message.lower():
                raise MemberNotFound(
                    f"member {member_id:x} is not in the cluster ({self.where})",
                    hint="it was probably removed already; `bootstrap status` lists the members",
                ) from None
            raise

    # --- snapshot ---------------------------------------------------------------------

    def snapshot(self, out: Path, *, timeout: float | None = None) -> SnapshotInfo:
        """Stream a snapshot into ``out`` atomically (mode 0600: it holds Secrets).

        etcd appends the sha256 of the database to the stream (size % 512 == 32); we check
        it. The revision is read from the snapshot itself (bbolt "key" bucket), which also
        proves the file is a database. ``timeout`` bounds the whole stream (default 10 min).
        """
        deadline = timeout if timeout is not None else max(self.timeout, 600.0)
        out = Path(out)
        tmp = out.parent / f".{out.name}.partial.{os.getpid()}"
        digest = hashlib.sha256()
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise EtcdError(
                f"cannot write the snapshot to {out}: {exc.strerror}",
                hint="choose a writable directory (--out)",
            ) from None
        try:
            with os.fdopen(fd, "wb") as f:

                def stream() -> None:
                    nonlocal size
                    _grpc_module, _pyetcd, etcdrpc = _grpc()
                    for chunk in self._channel().maintenancestub.Snapshot(
                        etcdrpc.SnapshotRequest(), deadline
                    ):
                        blob = bytes(chunk.blob)
                        f.write(blob)
                        digest.update(blob)
                        size += len(blob)

                self._rpc("snapshot", stream, timeout=deadline)
                f.flush()
                os.fsync(f.fileno())
            hash_verified = _check_embedded_hash(tmp, size)
            try:
                revision = bolt_max_revision(tmp)
            except ValueError as exc:
                raise EtcdError(
                    f"the snapshot from {self.where} is not a valid etcd database: {exc}",
                    hint="retry; if it persists, check the member's disk and logs",
                ) from None
            os.replace(tmp, out)
            _fsync_dir(out.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return SnapshotInfo(
            path=out,
            size=size,
            sha256=digest.hexdigest(),
            revision=revision,
            hash_verified=hash_verified,
        )

    # --- plumbing ---------------------------------------------------------------------

    def _rpc(
        self,
        what: str,
        call: Callable[[], T],
        *,
        timeout: float | None = None,
    ) -> T:
        grpc = _grpc()[0]
        try:
            return call()
        except grpc.RpcError as exc:
            # A failed channel is never handed out again: the next client connects anew
            # instead of inheriting gRPC's reconnect back-off.
            _CHANNELS.retire(self._key, self._client)
            self._client = None
            raise self._rpc_error(
                what, exc, timeout if timeout is not None else self.timeout
            ) from None

    def _rpc_error(self, what: str, exc: Any, timeout: float) -> EtcdError:
        grpc = _grpc()[0]
        code = exc.code()
        details = str(exc.details() or "")
        where = self.where
        lowered = details.lower()
        if code == grpc.StatusCode.UNAVAILABLE and "connection refused" in lowered:
            return EtcdUnreachable(
                f"{where}: connection refused ({what})",
                kind="refused",
                hint="etcd is not listening there: is the member running on that master, and "
                "is the SSH tunnel up?",
            )
        if code == grpc.StatusCode.UNAVAILABLE and any(m in lowered for m in _CUT_MARKERS):
            # Not a TLS verdict: the peer cut the connection before any TLS message. Our
            # SSH tunnel does exactly that when the master's port refuses the connection.
            return EtcdUnreachable(
                f"{where}: connection closed before the TLS handshake ({what}): nothing "
                "accepted it on the master's port (refused, or the member is restarting)",
                kind="closed",
                hint="is the etcd member running on that master? (`bootstrap status`)",
            )
        if code == grpc.StatusCode.UNAVAILABLE and any(m in lowered for m in _TLS_MARKERS):
            return _tls_error(where, what, details, self.tls)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return EtcdUnreachable(
                f"{where}: no answer to {what} within {timeout:g}s",
                kind="timeout",
                # What this one call tells, no more: whether the cluster has quorum is
                # for the caller to say (verify prints it beside this hint).
                hint="the member may be stopped, overloaded or cut off from its peers "
                "(a request through raft also waits while the member has no leader)",
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return EtcdUnreachable(
                f"{where} unavailable ({what}): {details}",
                kind="unavailable",
                hint="is the member running and reachable through the tunnel?",
            )
        return _RpcRejected(
            f"{where} rejected {what}: {code.name}: {details}",
            server_message=details,
            hint="see the etcd member's log on that master",
        )

    def _gateway(
        self, what: str, path: str, payload: dict[str, Any], *, read_only: bool = False
    ) -> dict[str, Any]:
        """POST one request to the gateway. A read (``read_only``) may use a kept-alive
        connection and is asked once more on a new one when that closed while idle; a
        change always gets a new connection, so it is never sent twice."""
        try:
            result = httpcheck.request(
                self.host,
                self.port,
                path,
                method="POST",
                body=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
                tls=self._gateway_tls,
                timeout=self.timeout,
                server_name=self.server_name,
                context=self._ssl_context,
                label=self.where,
                idempotent=read_only,
            )
        except httpcheck.HTTPCheckError as exc:
            raise self._transport_error(what, exc) from None
        try:
            doc = json.loads(result.body) if result.body else {}
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise EtcdError(
                f"{self.where}: {what}: unexpected answer {result.summary()}",
                hint="is this an etcd client port (3.4+ JSON gateway under /v3/)?",
            )
        if result.status != 200:
            message = str(doc.get("message") or doc.get("error") or result.summary())
            if result.status == 503:  # gRPC's UNAVAILABLE: no leader, or shutting down
                raise EtcdUnreachable(
                    f"{self.where} unavailable ({what}): {message}",
                    kind="unavailable",
                    hint="the member may have no leader (no quorum) or be stopping",
                )
            raise _GatewayRejected(
                f"{self.where} rejected {what}: {message}",
                server_message=message,
                hint="see the etcd member's log on that master",
            )
        return doc

    def _transport_error(self, what: str, exc: httpcheck.HTTPCheckError) -> EtcdError:
        """No answer: the member, or the tunnel to it, is down or slow. TLS problems are
        plain EtcdErrors (they name the files); the rest say why nothing answered."""
        if exc.kind == "refused":
            return EtcdUnreachable(
                f"{exc.message} ({what})",
                kind="refused",
                hint="etcd is not listening there: is the member running on that master, and "
                "is the SSH tunnel up?",
            )
        if exc.kind == "timeout":
            return EtcdUnreachable(
                f"{exc.message} ({what})",
                kind="timeout",
                # What this one call tells, no more: whether the cluster has quorum is
                # for the caller to say (verify prints it beside this hint).
                hint="the member may be stopped, overloaded or cut off from its peers "
                "(a request through raft also waits while the member has no leader)",
            )
        if exc.kind == "connection":
            # Cut before any answer: our SSH tunnel does exactly that when the master's
            # port refuses the connection.
            return EtcdUnreachable(
                f"{self.where}: connection closed before an answer ({what}): nothing "
                f"accepted it on the master's port (refused, or the member is restarting); "
                f"{exc.message}",
                kind="closed",
                hint="is the etcd member running on that master? (`bootstrap status`)",
            )
        return EtcdError(f"{exc.message} ({what})", hint=exc.hint)


def _field(doc: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """doc[key] when it has the JSON type ``kind``; the default when etcd left it out
    (the gateway omits fields at their zero value)."""
    value = doc.get(key, default)
    if not isinstance(value, kind):
        raise _unexpected(doc)
    return value


def _uint(doc: dict[str, Any], key: str) -> int:
    """A uint64 of the gateway: a decimal string (a number from other gateways), 0 when
    left out."""
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _unexpected(doc)
    try:
        number = int(value)
    except ValueError:
        raise _unexpected(doc) from None
    if number < 0:
        raise _unexpected(doc)
    return number


def _unexpected(doc: object) -> EtcdError:
    return EtcdError(
        f"unexpected answer from etcd's gateway: {shorten(repr(doc), 300)}",
        hint="is this an etcd client port (3.4+ JSON gateway under /v3/)?",
    )


class _RpcRejected(EtcdError):
    """The server answered with an error (not a transport failure)."""

    def __init__(self, message: str, *, server_message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.server_message = server_message


class _GatewayRejected(_RpcRejected):
    pass


def probe_health(
    host: str, port: int, path: str, timeout: float, label: str | None = None
) -> tuple[bool, str]:
    """Plain-HTTP GET on the member's metrics port (2381), as the kubelet's probes do.

    /health answers JSON {"health":"true"}; /readyz and /livez answer "ok". Healthy means
    HTTP 200 and that body.
    """
    try:
        result = httpcheck.request(host, port, path, tls=None, timeout=timeout, label=label)
    except httpcheck.HTTPCheckError as exc:
        return False, exc.message
    if result.status != 200:
        return False, f"GET {path}: {result.summary()}"
    if path.startswith("/health"):
        try:
            doc = json.loads(result.body)
        except ValueError:
            return False, f"GET {path}: not JSON: {result.summary()}"
        healthy = isinstance(doc, dict) and str(doc.get("health")) == "true"
        return healthy, f"GET {path}: {result.summary()}"
    return result.text.strip() == "ok", f"GET {path}: {result.summary()}"


def health_path(etcd_version: tuple[int, int, int]) -> str:
    """The metrics-port probe path for this etcd version (/readyz exists from 3.5.11):
    the path its manifest's probes use (manifests.components)."""
    return "/readyz" if etcd_version >= ETCD_LIVEZ_READYZ_SINCE else "/health"


# --- helpers --------------------------------------------------------------------------


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _tls_error(where: str, what: str, details: str, tls: TLSFiles) -> EtcdError:
    upper = details.upper()
    short = (
        details.rsplit("SSL_ERROR_SSL:", 1)[-1].strip() if "SSL_ERROR_SSL" in details else details
    )
    ca, cert = describe(tls.ca), describe(tls.cert)
    if "CERTIFICATE_VERIFY_FAILED" in upper or "PEER NAME" in upper:
        return EtcdUnreachable(
            f"TLS: {where}: the server certificate is not trusted by CA file {ca} ({short}) "
            f"[client cert {cert}]",
            kind="tls",
            hint="the etcd server cert must be signed by that CA (pki/etcd/ca.crt) and carry "
            "the address you connect to as a SAN",
        )
    if _TLS13_CLIENT_REFUSAL in upper:
        return EtcdUnreachable(
            f"TLS: {where} refused the client certificate {cert} right after the handshake "
            f"({short}; with TLS 1.3 that is how a server rejects a client certificate)",
            kind="tls",
            hint=f"{cert} must be signed by the etcd CA the member trusts "
            "(--trusted-ca-file, pki/etcd/ca.crt) and be valid now",
        )
    if any(alert in upper for alert in _CLIENT_CERT_ALERTS):
        return EtcdUnreachable(
            f"TLS: {where} refused the client certificate {cert} ({short})",
            kind="tls",
            hint=f"{cert} must be signed by the etcd CA the member trusts "
            "(--trusted-ca-file, pki/etcd/ca.crt) and be valid now",
        )
    return EtcdUnreachable(
        f"TLS handshake with {where} failed during {what}: {short} "
        f"[client cert {cert}, CA {ca}]",
        kind="tls",
        hint="check that the port is etcd's client port and the certs are the etcd PKI's",
    )


def _member_from_json(doc: Any) -> Member:
    if not isinstance(doc, dict):
        raise EtcdError(f"unexpected member in etcd's answer: {shorten(repr(doc), 300)}")
    return Member(
        id=_uint(doc, "ID"),
        name=str(doc.get("name", "")),
        peer_urls=tuple(str(u) for u in doc.get("peerURLs", [])),
        client_urls=tuple(str(u) for u in doc.get("clientURLs", [])),
        is_learner=bool(doc.get("isLearner", False)),
    )


def _check_embedded_hash(path: Path, size: int) -> bool:
    """etcd appends sha256(db) to the snapshot stream. False when absent; raise on mismatch."""
    if size % 512 != hashlib.sha256().digest_size:
        return False
    h = hashlib.sha256()
    with path.open("rb") as f:
        remaining = size - 32
        while remaining > 0:
            block = f.read(min(remaining, 1 << 20))
            if not block:
                break
            h.update(block)
            remaining -= len(block)
        trailer = f.read(32)
    if h.digest() != trailer:
        raise EtcdError(
            "the snapshot's embedded sha256 does not match its content (stream corrupted)",
            hint="take the snapshot again",
        )
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- bbolt: just enough to read the highest revision of an etcd snapshot ----------------
#
# Layout (go.etcd.io/bbolt): pages of `pageSize`; page header = id u64, flags u16,
# count u16, overflow u32. Pages 0 and 1 are meta pages (magic 0xED0CDAED); the valid one
# with the higher txid wins. Its root bucket points at a page whose leaf elements (flags,
# pos, ksize, vsize: 4 x u32) with the bucket flag hold bucket headers (root u64,
# sequence u64; root 0 = inline page follows). Branch elements are (pos, ksize u32, pgid
# u64). etcd's "key" bucket is keyed by 8-byte big-endian main revision + '_' + sub
# revision, so the last key of the rightmost leaf is the highest revision.

_BOLT_MAGIC = 0xED0CDAED
_PAGE_HEADER = struct.Struct("<QHHI")
_META = struct.Struct("<IIIIQQQQQQ")
_BRANCH_ELEM = struct.Struct("<IIQ")
_LEAF_ELEM = struct.Struct("<IIII")
_BRANCH_PAGE, _LEAF_PAGE = 0x01, 0x02
_BUCKET_LEAF_FLAG = 0x01


def bolt_max_revision(path: Path) -> int:
    """Highest main revision in the snapshot's "key" bucket (0 when empty).

    Raises ValueError when the file is not a bbolt database with a "key" bucket.
    """
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size < 2 * _PAGE_HEADER.size:
            raise ValueError("file too small")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            page_size, root = _bolt_meta(data)
            bucket = _bolt_find_bucket(data, page_size, ("page", root * page_size), b"key")
            key = _bolt_last_key(data, page_size, bucket)
    if key is None:
        return 0
    if len(key) < 8:
        raise ValueError("malformed revision key")
    return int(struct.unpack(">Q", key[:8])[0])


def _bolt_meta(data: mmap.mmap) -> tuple[int, int]:
    best: tuple[int, int, int] | None = None  # (txid, page_size, root)
    first = _META.unpack_from(data, _PAGE_HEADER.size)
    candidates = [0, first[2]] if first[0] == _BOLT_MAGIC else [0, 4096]
    for offset in candidates:
        if offset + _PAGE_HEADER.size + _META.size > len(data):
            continue
        magic, _version, page_size, _flags, root, _seq, _freelist, _pgid, txid, _sum = (
            _META.unpack_from(data, offset + _PAGE_HEADER.size)
        )
        if magic != _BOLT_MAGIC or page_size <= 0:
            continue
        if best is None or txid > best[0]:
            best = (txid, page_size, root)
    if best is None:
        raise ValueError("no valid bbolt meta page")
    return best[1], best[2]


def _bolt_page(data: mmap.mmap, offset: int) -> tuple[int, int]:
    if offset + _PAGE_HEADER.size > len(data):
        raise ValueError(f"page offset {offset} beyond end of file")
    _pid, flags, count, _overflow = _PAGE_HEADER.unpack_from(data, offset)
    return flags, count


# A bucket root is either a page on disk or an inline page inside a leaf value.
_Where = tuple[str, int]


def _bolt_child(data: mmap.mmap, page_size: int, value_offset: int) -> _Where:
    root, _seq = struct.unpack_from("<QQ", data, value_offset)
    if root == 0:
        return ("page", value_offset + 16)  # inline page follows the bucket header
    return ("page", root * page_size)


def _bolt_find_bucket(data: mmap.mmap, page_size: int, where: _Where, name: bytes) -> _Where:
    offset = where[1]
    flags, count = _bolt_page(data, offset)
    base = offset + _PAGE_HEADER.size
    if flags & _BRANCH_PAGE:
        # Find the child whose key range holds `name`.
        chosen = None
        for i in range(count):
            elem = base + i * _BRANCH_ELEM.size
            pos, ksize, pgid = _BRANCH_ELEM.unpack_from(data, elem)
            key = data[elem + pos : elem + pos + ksize]
            if key <= name or chosen is None:
                chosen = pgid
            if key > name:
                break
        if chosen is None:
            raise ValueError("empty branch page")
        return _bolt_find_bucket(data, page_size, ("page", chosen * page_size), name)
    if not flags & _LEAF_PAGE:
        raise ValueError(f"unexpected page flags {flags:#x}")
    for i in range(count):
        elem = base + i * _LEAF_ELEM.size
        eflags, pos, ksize, _vsize = _LEAF_ELEM.unpack_from(data, elem)
        key = data[elem + pos : elem + pos + ksize]
        if key == name and eflags & _BUCKET_LEAF_FLAG:
            return _bolt_child(data, page_size, elem + pos + ksize)
    raise ValueError(f"no {name.decode()!r} bucket")


def _bolt_last_key(data: mmap.mmap, page_size: int, where: _Where) -> bytes | None:
    offset = where[1]
    for _depth in range(64):  # a B+tree this deep would be a corrupt file
        flags, count = _bolt_page(data, offset)
        if count == 0:
            return None
        base = offset + _PAGE_HEADER.size
        if flags & _BRANCH_PAGE:
            elem = base + (count - 1) * _BRANCH_ELEM.size
            _pos, _ksize, pgid = _BRANCH_ELEM.unpack_from(data, elem)
            offset = pgid * page_size
            continue
        if flags & _LEAF_PAGE:
            elem = base + (count - 1) * _LEAF_ELEM.size
            _f, pos, ksize, _v = _LEAF_ELEM.unpack_from(data, elem)
            return bytes(data[elem + pos : elem + pos + ksize])
        raise ValueError(f"unexpected page flags {flags:#x}")
    raise ValueError("bbolt tree too deep")
