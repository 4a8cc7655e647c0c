"""The kubelet's HTTP static-pod source (`--manifest-url`), polled in its own thread.

As the kubelet does: GET the URL every `frequency` seconds with the configured headers;
a 200 body is a single Pod or a PodList (YAML or JSON). A non-200 answer, a transport
error or an unparseable/invalid body changes nothing (the last pods keep running) and is
recorded in `status()`; an unchanged body is skipped; an empty body means "no pods".
Redirects are not followed. HTTPS is verified against `ca_file` when given, else not
verified (documented lab choice).
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import threading
import urllib.parse
from typing import Any

from lab.runner.manifests import ManifestError, PodManifest, parse_url_body
from lab.runner.pod import utc_now

MAX_BODY = 16 * 1024 * 1024


def parse_header(text: str) -> tuple[str, str]:
    """'Name: value' -> (Name, value); raises ValueError for anything else."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


class UrlSource:
    def __init__(
        self,
        url: str,
        headers: list[tuple[str, str]],
        frequency: float,
        ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"--manifest-url must be an http(s) URL, got {url!r}")
        self.url = url
        self._parsed = parsed
        self.headers = headers
        self.frequency = frequency
        self.ca_file = ca_file
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pods: list[PodManifest] = []
        self._digest: str | None = None
        self.version = 0  # bumped whenever the pod set changes
        self._status: dict[str, Any] = {
            "url": url, "lastAttempt": None, "lastSuccess": None, "lastError": None,
            "lastStatusCode": None, "podCount": 0, "fetches": 0, "errors": 0,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="url-source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def pods(self) -> tuple[int, list[PodManifest]]:
        with self._lock:
            return self.version, list(self._pods)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._status)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.frequency)

    def _connection(self) -> http.client.HTTPConnection:
        host = self._parsed.hostname or ""
        if self._parsed.scheme == "https":
            if self.ca_file:
                context = ssl.create_default_context(cafile=self.ca_file)
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(
                host, self._parsed.port or 443, timeout=self.timeout, context=context
            )
        return http.client.HTTPConnection(host, self._parsed.port or 80, timeout=self.timeout)

    def _fetch(self) -> tuple[int, bytes]:
        target = self._parsed.path or "/"
        if self._parsed.query:
            target += "?" + self._parsed.query
        connection = self._connection()
        try:
            connection.request("GET", target, headers=dict(self.headers))
            response = connection.getresponse()
            return response.status, response.read(MAX_BODY)
        finally:
            connection.close()

    def _record(self, **fields: Any) -> None:
        with self._lock:
            self._status.update(fields)

    def poll_once(self) -> None:
        now = utc_now()
        with self._lock:
            self._status["lastAttempt"] = now
            self._status["fetches"] += 1
        try:
            code, body = self._fetch()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self._error(f"transport error: {type(exc).__name__}: {exc}", None)
            return
        if code != 200:
            self._error(f"HTTP {code}: keeping the last pods", code)
            return
        digest = hashlib.sha256(body).hexdigest()
        with self._lock:
            unchanged = digest == self._digest
        if unchanged:
            self._record(lastSuccess=now, lastError=None, lastStatusCode=code)
            return
        try:
            pods = parse_url_body(body.decode("utf-8"), self.url)
        except UnicodeDecodeError:
            self._error("body is not UTF-8: keeping the last pods", code)
            return
        except ManifestError as exc:
            self._error(f"unparseable body ({exc}): keeping the last pods", code)
            return
        with self._lock:
            self._digest = digest
            self._pods = pods
            self.version += 1
            self._status.update(lastSuccess=now, lastError=None, lastStatusCode=code,
                                podCount=len(pods))

    def _error(self, message: str, code: int | None) -> None:
        with self._lock:
            self._status["lastError"] = message
            self._status["lastStatusCode"] = code
            self._status["errors"] += 1
