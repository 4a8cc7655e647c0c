"""Reading static-pod manifests the way the kubelet does.

Directory source (kubelet `pkg/kubelet/config/file.go` semantics):
- names starting with `.` are ignored (that is how writers hide half-written files);
- subdirectories (and anything that is not a regular file) are not read;
- every other file, whatever its extension, is parsed as one v1 Pod in YAML or JSON
  (YAML is a superset of JSON, so one parser does both);
- an empty file is an error ("file was empty"), like the kubelet's.

URL source (kubelet `http.go`): the body is a single Pod or a PodList; an empty body means
"no pods". Parsing is here; polling is in `httpsource`.

The pod's identity is `namespace/name` (namespace defaults to `default`, as the kubelet
does for static pods). Its `config_hash` is a sha256 over canonical JSON of the parsed
object, so re-formatting a file (key order, quoting, flow vs block style) does not change
it and does not restart the pod -- the same idea as the kubelet's `kubernetes.io/config.hash`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

DEFAULT_NAMESPACE = "default"
# RFC 1123 subdomain, as the API server validates metadata.name / namespace.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ManifestError(ValueError):
    """The document is not a usable v1 Pod (or PodList)."""


@dataclass(frozen=True)
class PodManifest:
    """One validated pod, with where it came from."""

    pod: dict[str, Any]
    source: str
    config_hash: str

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"].get("namespace") or DEFAULT_NAMESPACE)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def config_hash(pod: dict[str, Any]) -> str:
    canonical = json.dumps(pod, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _load_document(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # One line is enough for a status file; YAML errors span several.
        raise ManifestError(f"not YAML/JSON: {' '.join(str(exc).split())}") from exc


def _require_str_list(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where} must be a list of strings")


def validate_pod(doc: Any) -> dict[str, Any]:
    """Check the fields the runner relies on; return the pod (unchanged) or raise."""
    if not isinstance(doc, dict):
        raise ManifestError(f"expected a mapping (a Pod), got {type(doc).__name__}")
    if doc.get("apiVersion") != "v1":
        raise ManifestError(f"apiVersion must be v1, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != "Pod":
        raise ManifestError(f"kind must be Pod, got {doc.get('kind')!r}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        raise ManifestError("metadata is missing")
    name = meta.get("name")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name):
        raise ManifestError(f"metadata.name must be a DNS subdomain, got {name!r}")
    namespace = meta.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or not _DNS_SUBDOMAIN.match(namespace)
    ):
        raise ManifestError(f"metadata.namespace must be a DNS subdomain, got {namespace!r}")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError("spec is missing")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise ManifestError("spec.containers must be a non-empty list")
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"spec.containers[{index}]"
        if not isinstance(container, dict):
            raise ManifestError(f"{where} must be a mapping")
        cname = container.get("name")
        if not isinstance(cname, str) or not cname:
            raise ManifestError(f"{where}.name is required")
        if cname in seen:
            raise ManifestError(f"{where}.name {cname!r} is duplicated")
        seen.add(cname)
        if not isinstance(container.get("image"), str) or not container["image"]:
            raise ManifestError(f"{where}.image is required")
        command = container.get("command")
        _require_str_list(command, f"{where}.command")
        if not command:
            raise ManifestError(f"{where}.command must not be empty")
        if "args" in container and container["args"] is not None:
            _require_str_list(container["args"], f"{where}.args")
        for env_index, env in enumerate(container.get("env") or []):
            if not isinstance(env, dict) or not isinstance(env.get("name"), str):
                raise ManifestError(f"{where}.env[{env_index}].name is required")
    for index, volume in enumerate(spec.get("volumes") or []):
        if not isinstance(volume, dict) or not isinstance(volume.get("name"), str):
            raise ManifestError(f"spec.volumes[{index}].name is required")
    return doc


def parse_pod_text(text: str, source: str) -> PodManifest:
    """Parse one file's content as a single Pod."""
    if not text.strip():
        raise ManifestError("file was empty")
    pod = validate_pod(_load_document(text))
    return PodManifest(pod=pod, source=source, config_hash=config_hash(pod))


def parse_url_body(text: str, source: str) -> list[PodManifest]:
    """Parse a URL body: a single Pod or a PodList. An empty body is no pods."""
    if not text.strip():
        return []
    doc = _load_document(text)
    if isinstance(doc, dict) and doc.get("kind") in ("PodList", "List"):
        if doc.get("apiVersion") != "v1":
            raise ManifestError(f"apiVersion must be v1, got {doc.get('apiVersion')!r}")
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise ManifestError("items must be a list")
        pods = []
        for index, item in enumerate(items):
            try:
                pod = validate_pod(item)
            except ManifestError as exc:
                # The kubelet rejects the whole list when one item is invalid.
                raise ManifestError(f"items[{index}]: {exc}") from exc
            pods.append(PodManifest(pod=pod, source=source, config_hash=config_hash(pod)))
        return pods
    pod = validate_pod(doc)
    return [PodManifest(pod=pod, source=source, config_hash=config_hash(pod))]


@dataclass
class FileResult:
    """The last parse of one file, cached by content digest."""

    digest: str
    manifest: PodManifest | None
    error: str | None


@dataclass
class DirectoryScan:
    """What one listing of the manifest directory produced."""

    manifests: list[PodManifest] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, error)
    new_failures: list[tuple[str, str]] = field(default_factory=list)  # first seen this scan
    listing_error: str | None = None


class DirectoryReader:
    """Re-list and parse a manifest directory; each distinct bad content counts once."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._cache: dict[str, FileResult] = {}

    def scan(self) -> DirectoryScan:
        result = DirectoryScan()
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as exc:
            result.listing_error = f"cannot list {self.directory}: {exc}"
            return result
        present: set[str] = set()
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(self.directory, name)
            if not os.path.isfile(path):  # subdirectories, sockets, dangling links
                continue
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue  # vanished between listdir and open: gone this round
            present.add(path)
            digest = hashlib.sha256(data).hexdigest()
            cached = self._cache.get(path)
            if cached is None or cached.digest != digest:
                cached = self._parse(path, data, digest)
                self._cache[path] = cached
                if cached.error is not None:
                    result.new_failures.append((path, cached.error))
            if cached.manifest is not None:
                result.manifests.append(cached.manifest)
            elif cached.error is not None:
                result.errors.append((path, cached.error))
        for gone in set(self._cache) - present:
            del self._cache[gone]
        return result

    @staticmethod
    def _parse(path: str, data: bytes, digest: str) -> FileResult:
        try:
            text = data.decode("utf-8")
            return FileResult(digest, parse_pod_text(text, path), None)
        except UnicodeDecodeError:
            return FileResult(digest, None, "not UTF-8 text")
        except ManifestError as exc:
            return FileResult(digest, None, str(exc))
