"""startup / liveness / readiness probes with the kubelet's semantics.

- httpGet (HTTP or HTTPS; HTTPS is not verified, as the kubelet does not verify) and
  tcpSocket. Success is a status in [200, 400). Redirects are not followed.
- host: the probe's `host` if given, else 127.0.0.1 (lab pods are hostNetwork; the real
  kubelet would use the pod IP, which for hostNetwork pods is the host's IP).
- port: a number, or a name resolved through the container's `ports[].name`.
- initialDelaySeconds is counted from the container's start; liveness and readiness do
  nothing until the startup probe (if any) has succeeded; once the startup probe has
  succeeded it is not run again for that container instance.
- A result flips to failure after failureThreshold consecutive failures and to success
  after successThreshold consecutive successes (kubelet defaults: period 10, timeout 1,
  failure 3, success 1).
- `time_scale` multiplies initialDelaySeconds and periodSeconds (never timeouts); 1.0 is
  faithful.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROBE_KINDS = ("startup", "liveness", "readiness")


class ProbeConfigError(ValueError):
    """The probe cannot be run by this runner (unsupported handler, unknown named port)."""


@dataclass(frozen=True)
class ProbeSpec:
    kind: str
    handler: str  # "http" or "tcp"
    scheme: str
    host: str
    port: int
    path: str
    headers: tuple[tuple[str, str], ...]
    timeout: float
    period: float
    initial_delay: float
    failure_threshold: int
    success_threshold: int

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.handler == "tcp":
            return f"tcp {host}:{self.port}"
        return f"{self.scheme.lower()}://{host}:{self.port}{self.path}"


def _resolve_port(port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ProbeConfigError(f"probe port {port!r} is not a port name of the container")


def _positive(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else default


def probe_spec(
    kind: str, probe: dict[str, Any], container: dict[str, Any], time_scale: float
) -> ProbeSpec:
    if isinstance(probe.get("httpGet"), dict):
        action = probe["httpGet"]
        handler = "http"
    elif isinstance(probe.get("tcpSocket"), dict):
        action = probe["tcpSocket"]
        handler = "tcp"
    else:
        raise ProbeConfigError(f"{kind} probe: only httpGet and tcpSocket are supported")
    scheme = str(action.get("scheme") or "HTTP").upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise ProbeConfigError(f"{kind} probe: unknown scheme {scheme!r}")
    headers = tuple(
        (str(h.get("name")), str(h.get("value", ""))) for h in action.get("httpHeaders") or []
    )
    path = str(action.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    success_threshold = int(probe.get("successThreshold") or 1)
    if kind in ("startup", "liveness"):
        success_threshold = 1  # the API requires 1 for these
    return ProbeSpec(
        kind=kind,
        handler=handler,
        scheme=scheme,
        # "[::1]" and "::1" both mean the IPv6 loopback; http.client wants it bare.
        host=str(action.get("host") or "127.0.0.1").strip("[]"),
        port=_resolve_port(action.get("port"), container),
        path=path,
        headers=headers,
        timeout=_positive(probe.get("timeoutSeconds"), 1.0),
        period=_positive(probe.get("periodSeconds"), 10.0) * time_scale,
        initial_delay=max(0.0, float(probe.get("initialDelaySeconds") or 0)) * time_scale,
        failure_threshold=int(probe.get("failureThreshold") or 3),
        success_threshold=success_threshold,
    )


def container_probes(container: dict[str, Any], time_scale: float) -> dict[str, ProbeSpec]:
    specs = {}
    for kind in PROBE_KINDS:
        probe = container.get(f"{kind}Probe")
        if isinstance(probe, dict):
            specs[kind] = probe_spec(kind, probe, container, time_scale)
    return specs


def run_probe(spec: ProbeSpec) -> str | None:
    """One probe attempt: None on success, else a one-line reason."""
    try:
        if spec.handler == "tcp":
            with socket.create_connection((spec.host, spec.port), timeout=spec.timeout):
                return None
        connection: http.client.HTTPConnection
        if spec.scheme == "HTTPS":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection(
                spec.host, spec.port, timeout=spec.timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(spec.host, spec.port, timeout=spec.timeout)
        try:
            connection.request("GET", spec.path, headers=dict(spec.headers))
            response = connection.getresponse()
            response.read(10240)
            if 200 <= response.status < 400:
                return None
            return f"{spec.describe()}: HTTP {response.status}"
        finally:
            connection.close()
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return f"{spec.describe()}: {type(exc).__name__}: {exc}"


@dataclass
class ProbeState:
    result: str = "pending"  # pending | success | failure
    successes: int = 0
    failures: int = 0
    last_error: str | None = None
    done: bool = False  # startup probe that has succeeded


@dataclass
class ProbeSet:
    """The probes of one container instance; each probe runs in its own daemon thread.

    `on_fatal(kind, message)` is called once when startup or liveness crosses its failure
    threshold; the container worker then kills and restarts the instance.
    """

    specs: dict[str, ProbeSpec]
    started_monotonic: float
    on_change: Callable[[], None]
    on_fatal: Callable[[str, str], None]
    states: dict[str, ProbeState] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.states = {kind: ProbeState() for kind in self.specs}

    def start(self) -> None:
        for spec in self.specs.values():
            threading.Thread(
                target=self._loop, args=(spec,), name=f"probe-{spec.kind}", daemon=True
            ).start()

    def startup_passed(self) -> bool:
        with self.lock:
            state = self.states.get("startup")
            return state is None or state.done

    def snapshot(self) -> tuple[dict[str, str], str | None]:
        with self.lock:
            results = {k: self.states[k].result if k in self.states else "none" for k in
                       PROBE_KINDS}
            errors = [s.last_error for s in self.states.values() if s.last_error]
            return results, (errors[-1] if errors else None)

    def ready(self) -> bool:
        with self.lock:
            readiness = self.states.get("readiness")
            startup = self.states.get("startup")
            if any(self.states[k].result == "failure" for k in ("startup", "liveness")
                   if k in self.states):
                return False  # about to be killed: never report it ready meanwhile
            if readiness is not None:
                return readiness.result == "success"
            return startup is None or startup.done

    def _loop(self, spec: ProbeSpec) -> None:
        delay = spec.initial_delay - (time.monotonic() - self.started_monotonic)
        if delay > 0 and self.stop.wait(delay):
            return
        while not self.stop.is_set():
            if spec.kind == "startup" or self.startup_passed():
                error = run_probe(spec)
                if self.stop.is_set():
                    return  # the instance ended while we probed: the result is stale
                if self._record(spec, error):
                    return
            if self.stop.wait(spec.period):
                return

    def _record(self, spec: ProbeSpec, error: str | None) -> bool:
        """Store one attempt; True when this probe's thread should end."""
        fatal: str | None = None
        with self.lock:
            state = self.states[spec.kind]
            before = state.result
            if error is None:
                state.successes += 1
                state.failures = 0
                if state.successes >= spec.success_threshold:
                    state.result = "success"
                    state.last_error = None
                    if spec.kind == "startup":
                        state.done = True
            else:
                state.failures += 1
                state.successes = 0
                state.last_error = error
                if state.failures >= spec.failure_threshold:
                    state.result = "failure"
                    if spec.kind in ("startup", "liveness"):
                        fatal = (
                            f"{spec.kind} probe failed {state.failures} times: {error}"
                        )
            changed = state.result != before
            finished = state.done or fatal is not None
        if changed:
            self.on_change()
        if fatal is not None:
            self.on_fatal(spec.kind, fatal)
        return finished
