"""The URL source's settings from a file on the host, re-read when it changes.

The lab's stand-in for editing ``staticPodURL`` / ``staticPodURLHeader`` in a real
KubeletConfiguration and restarting the kubelet: ``bootstrap init --delivery http``
writes ``config.json`` (0600: it holds the node's bearer token) next to the runner's
status file, and the runner swaps its URL source without a restart::

    {"manifestUrl": "https://10.213.5.1:8443/nodes/m1/pods",
     "headers": {"Authorization": "Bearer ..."},
     "manifestUrlCA": "/etc/kubernetes/pki/ca.crt",
     "httpCheckFrequency": 2}

Absent file: the start-up flags apply. An empty ``manifestUrl`` (or ``{}``) turns the URL
source off. An unreadable or invalid file is logged once and changes nothing.
Header values never reach the log or the status file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("lab.runner")

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class UrlSettings:
    url: str
    headers: tuple[tuple[str, str], ...]
    ca_file: str | None
    frequency: float


def parse_config(data: bytes, default_frequency: float) -> UrlSettings | None:
    """The settings in a config file, None when it turns the URL source off."""
    try:
        doc: Any = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("must be a JSON object")
    url = doc.get("manifestUrl") or ""
    if not isinstance(url, str):
        raise ValueError("manifestUrl must be a string")
    if not url:
        return None
    headers = doc.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError("headers must map names to string values")
    ca = doc.get("manifestUrlCA")
    if ca is not None and not isinstance(ca, str):
        raise ValueError("manifestUrlCA must be a path")
    frequency = doc.get("httpCheckFrequency", default_frequency)
    if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or frequency <= 0:
        raise ValueError("httpCheckFrequency must be a positive number of seconds")
    return UrlSettings(url, tuple(sorted(headers.items())), ca or None, float(frequency))


@dataclass(frozen=True)
class Change:
    """New URL settings to apply. from_file False: the file is gone, the flags apply."""

    settings: UrlSettings | None
    from_file: bool


class ConfigWatcher:
    """Tells the runner when the config file's URL settings changed."""

    def __init__(self, path: str, default_frequency: float) -> None:
        self.path = path
        self.default_frequency = default_frequency
        self._digest: str | None = None  # of the content last seen; "" = file absent
        self.error: str | None = None

    def poll(self) -> Change | None:
        """A Change to apply, or None when there is nothing new."""
        try:
            with open(self.path, "rb") as handle:
                data: bytes | None = handle.read()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            self._fail(f"cannot read {self.path}: {exc}", "unreadable")
            return None
        digest = "" if data is None else hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return None
        first = self._digest is None
        if data is None:
            # Never had a file (nothing to do), or it was removed: the flags apply again.
            self._digest, self.error = digest, None
            return None if first else Change(None, from_file=False)
        try:
            settings = parse_config(data, self.default_frequency)
        except ValueError as exc:
            self._fail(f"{self.path}: {exc}; keeping the current URL source", digest)
            return None
        self._digest, self.error = digest, None
        log.info("config %s: manifest URL %s", self.path, settings.url if settings else "(off)")
        return Change(settings, from_file=True)

    def _fail(self, message: str, digest: str) -> None:
        if digest != self._digest:
            log.error("%s", message)
        self._digest, self.error = digest, message


def default_config_path(status_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(status_path)), CONFIG_NAME)
