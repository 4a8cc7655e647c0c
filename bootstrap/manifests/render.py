"""Render the four static-pod manifests of one master from Jinja templates.

The decisions (flags, probes, volumes) come from ``bootstrap.manifests.components`` as plain data;
the templates only lay them out as kubeadm's block-style YAML. Every value goes through
the ``yaml`` filter, which emits a YAML scalar that reads back as exactly that value, so
no input can change the document's structure.

Each pod also carries ``bootstrap.k8s.io/config-digest``: a sha256 over the path and
content hash of every mounted file the pod's flags name. A renewed certificate therefore
changes exactly the manifests of the pods that use it, and the kubelet restarts only those.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import traceback
from collections.abc import Callable, Iterable, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
import yaml

from bootstrap.errors import InputError, TemplateError
from bootstrap.inventory.model import MANIFESTS_DIR, Inventory, Master
from bootstrap.manifests.components import (
    APISERVER,
    CONTROLLER_MANAGER,
    ENCRYPTION_CONFIG_PATH,
    ETCD,
    SCHEDULER,
    EtcdCluster,
    PodFacts,
    flag_paths,
    pod_facts,
)
from bootstrap.model import FileSpec

__all__ = [
    "CONFIG_DIGEST_ANNOTATION",
    "ENCRYPTION_CONFIG_PATH",
    "MANIFEST_MODE",
    "TEMPLATE_NAMES",
    "EtcdCluster",
    "config_digest",
    "default_templates_dir",
    "render_manifests",
]

CONFIG_DIGEST_ANNOTATION = "bootstrap.k8s.io/config-digest"
MANIFEST_MODE = 0o600
TEMPLATE_NAMES: dict[str, str] = {
    ETCD: "etcd.yaml.j2",
    APISERVER: "kube-apiserver.yaml.j2",
    CONTROLLER_MANAGER: "kube-controller-manager.yaml.j2",
    SCHEDULER: "kube-scheduler.yaml.j2",
}

TemplatesDir = Path | Traversable


def default_templates_dir() -> TemplatesDir:
    """The templates shipped with the package (``templates/`` installed as bootstrap.templates).

    Falls back to the source checkout's top-level ``templates/`` when the package is used
    from a clone without being installed (there is no ``bootstrap/templates`` directory).
    """
    try:
        return importlib.resources.files("bootstrap.templates")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "templates"


# --- YAML scalars -----------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _yaml_string(value: str) -> str:
    text = yaml.safe_dump(value, width=float("inf"), allow_unicode=False)
    text = text.removesuffix("\n...\n").removesuffix("\n")
    if "\n" in text:
        # A value with line breaks would come out as a multi-line scalar; the double-quoted
        # style escapes them and stays on one line.
        text = yaml.safe_dump(
            value, width=float("inf"), allow_unicode=False, default_style='"'
        ).removesuffix("\n")
    return text


def yaml_scalar(value: object) -> str:
    """A one-line YAML scalar that loads back as `value` (the templates' `yaml` filter)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _yaml_string(value)
    if isinstance(value, jinja2.Undefined):
        str(value)  # a StrictUndefined raises UndefinedError naming the missing variable
    raise TypeError(f"yaml filter: cannot render a {type(value).__name__} as a scalar")


# --- Jinja environment ------------------------------------------------------------------


class _TraversableLoader(jinja2.BaseLoader):
    """Loads templates from a directory given as a Path or an importlib Traversable."""

    def __init__(self, root: TemplatesDir) -> None:
        self.root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        node = self.root.joinpath(template)
        if not node.is_file():
            raise jinja2.TemplateNotFound(template)
        # The filename lets Jinja put template lines into tracebacks (see _template_line).
        return node.read_text(encoding="utf-8"), str(node), lambda: True


# One compiled Environment per templates directory: Jinja caches compiled templates in it,
# so rendering many masters compiles each template once.
_ENVIRONMENTS: dict[str, jinja2.Environment] = {}


def _environment(root: TemplatesDir) -> jinja2.Environment:
    key = str(root)
    env = _ENVIRONMENTS.get(key)
    if env is None:
        env = jinja2.Environment(
            loader=_TraversableLoader(root),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        env.filters["yaml"] = yaml_scalar
        _ENVIRONMENTS[key] = env
    return env


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line of a render-time error (Jinja rewrites frames to template lines)."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line


def _load_template(root: TemplatesDir, name: str) -> jinja2.Template:
    env = _environment(root)
    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(
            f"template {name} not found in {root}",
            hint="a --templates directory must hold all four *.yaml.j2 templates",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{exc.filename or name}:{exc.lineno}: template syntax error: {exc.message}",
            hint="fix the template",
        ) from None


def _render_template(root: TemplatesDir, name: str, context: Mapping[str, Any]) -> str:
    template = _load_template(root, name)
    try:
        return template.render(context)
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        # Undefined variables (StrictUndefined), and errors raised by filters or operations
        # inside the template.
        filename = template.filename or name
        line = _template_line(exc, filename)
        where = f"{filename}:{line}" if line else filename
        raise TemplateError(
            f"{where}: {type(exc).__name__}: {exc}",
            hint="templates may only use the variables listed in their header comment",
        ) from None


# --- checking the result ----------------------------------------------------------------


def _loader() -> type[yaml.SafeLoader]:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _pod_problems(doc: object) -> list[str]:
    """Structural checks of a v1 Pod as a static pod (not a full API validation)."""
    if not isinstance(doc, dict):
        return ["the document is not a mapping"]
    problems: list[str] = []
    if doc.get("apiVersion") != "v1":
        problems.append("apiVersion is not v1")
    if doc.get("kind") != "Pod":
        problems.append("kind is not Pod")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        problems.append("metadata.name is missing")
    elif metadata.get("namespace") != "kube-system":
        problems.append("metadata.namespace is not kube-system")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return [*problems, "spec is missing"]
    volumes = spec.get("volumes") or []
    if not isinstance(volumes, list) or not all(isinstance(v, dict) for v in volumes):
        return [*problems, "spec.volumes is not a list of mappings"]
    volume_names = [v.get("name") for v in volumes]
    if len(set(volume_names)) != len(volume_names):
        problems.append("spec.volumes has duplicate names")
    for volume in volumes:
        host_path = volume.get("hostPath")
        if not isinstance(host_path, dict) or not str(host_path.get("path", "")).startswith("/"):
            problems.append(f"volume {volume.get('name')!r} needs a hostPath with an absolute path")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [*problems, "spec.containers is empty"]
    for index, container in enumerate(containers):
        where = f"spec.containers[{index}]"
        if not isinstance(container, dict):
            problems.append(f"{where} is not a mapping")
            continue
        if not all(isinstance(container.get(key), str) for key in ("name", "image")):
            problems.append(f"{where} needs a name and an image")
        command = container.get("command")
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            problems.append(f"{where}.command is not a list of strings")
        for mount in container.get("volumeMounts") or []:
            if not isinstance(mount, dict) or mount.get("name") not in volume_names:
                problems.append(f"{where}: volumeMount {mount!r} has no matching volume")
        port_names = {p.get("name") for p in container.get("ports") or [] if isinstance(p, dict)}
        for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(probe_key)
            if probe is None:
                continue
            port = probe.get("httpGet", {}).get("port") if isinstance(probe, dict) else None
            if isinstance(port, str) and port not in port_names:
                problems.append(f"{where}.{probe_key} names port {port!r}, which is not declared")
            elif not isinstance(port, (int, str)):
                problems.append(f"{where}.{probe_key}.httpGet.port is missing")
    return problems


def _check_pod(text: str, template: str, component: str) -> None:
    try:
        doc = yaml.load(text, Loader=_loader())  # a SafeLoader
    except yaml.YAMLError as exc:
        raise TemplateError(
            f"{template}: rendered {component} manifest is not valid YAML: {exc}",
            hint="fix the template's layout (indentation, a value not passed through | yaml)",
        ) from None
    problems = _pod_problems(doc)
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    if isinstance(metadata, dict) and metadata.get("name") != component:
        problems.append(f"metadata.name is not {component}")
    if problems:
        raise TemplateError(
            f"{template}: rendered {component} manifest is not a valid static v1 Pod: "
            + "; ".join(problems),
            hint="fix the template",
        )


# --- the config digest ------------------------------------------------------------------


def config_digest(files: Iterable[FileSpec]) -> str:
    """sha256 over (path, sha256(content)) of the files, sorted by path."""
    h = hashlib.sha256()
    for spec in sorted(files, key=lambda f: f.path):
        h.update(f"{spec.path}\0{spec.sha256}\n".encode())
    return "sha256:" + h.hexdigest()


def pod_mounted_files(pod: PodFacts, mounted_files: Mapping[str, FileSpec]) -> list[FileSpec]:
    """The files among `mounted_files` this pod uses: those its flags name (or lie below a
    directory a flag names). Each must lie under one of the pod's hostPath volumes.

    Why flags and not every file below a volume: kube-apiserver and the controller-manager
    mount all of /etc/kubernetes/pki (kubeadm's layout), which includes etcd's server and
    peer certificates; renewing those must restart etcd, not the apiservers.
    """
    named: list[tuple[str, str]] = []  # (flag, path)
    for flag, value in pod.flags:
        for path in flag_paths(value):
            if not any(v.contains(path) for v in pod.volumes):
                raise InputError(
                    f"{pod.component}: --{flag}={value} names {path}, which is not under any "
                    "of the pod's hostPath volumes",
                    hint="the container would not see that path; keep files under "
                    "/etc/kubernetes (extra volumes are not supported) or drop the flag",
                )
            named.append((flag, path))
    used: list[FileSpec] = []
    for path, spec in mounted_files.items():
        if any(path == p or path.startswith(p.rstrip("/") + "/") for _, p in named):
            used.append(spec)
    return used


# --- public entry point -----------------------------------------------------------------


def _context(pod: PodFacts, digest: str) -> dict[str, Any]:
    annotations = tuple(sorted((*pod.annotations, (CONFIG_DIGEST_ANNOTATION, digest))))
    return {
        "component": pod.component,
        "annotations": annotations,
        "command": pod.command,
        "image": pod.image,
        "ports": pod.ports,
        "liveness": pod.liveness,
        "readiness": pod.readiness,
        "startup": pod.startup,
        "requests": pod.requests,
        "volumes": pod.volumes,
    }


def render_manifests(
    inventory: Inventory,
    master: Master,
    mounted_files: Mapping[str, FileSpec],
    etcd: EtcdCluster,
    *,
    templates_dir: TemplatesDir | None = None,
) -> dict[str, FileSpec]:
    """The master's four manifests: /etc/kubernetes/manifests/<component>.yaml -> FileSpec.

    `mounted_files` is the master's PKI, kubeconfig and encryption-config files (remote
    path -> spec); only their paths and content hashes are used, for the config digest.
    """
    root = templates_dir if templates_dir is not None else default_templates_dir()
    out: dict[str, FileSpec] = {}
    for pod in pod_facts(inventory, master, etcd):
        template = TEMPLATE_NAMES[pod.component]
        digest = config_digest(pod_mounted_files(pod, mounted_files))
        text = _render_template(root, template, _context(pod, digest))
        _check_pod(text, template, pod.component)
        path = f"{MANIFESTS_DIR}/{pod.component}.yaml"
        out[path] = FileSpec(path=path, content=text.encode("utf-8"), mode=MANIFEST_MODE)
    return out
