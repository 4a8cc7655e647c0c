"""Static pods delivered through the kubelet's manifest URL instead of the manifests dir.

The model: ``init --delivery http`` **publishes** each master's PodList into the state
dir (``<state>/served/<node>.json``, built from exactly the manifests file delivery
writes); ``bootstrap serve`` (bootstrap.day2.serve) serves each published document to its
node only and records which document each node last fetched
(``<state>/served/<node>.fetched.json``). Publishing is the "write" of file delivery, so
the rollout keeps its order and health gates: new pods are published to every master
together, a pod whose spec changes is re-published master by master, each time waiting
until the node fetched the new document, runs the new instance and the cluster is healthy.
A pod that still runs from a file-delivered manifest moves to the URL master by master
too: file removed, pod stopped, then published (``switch_from_file``).
A server that re-rendered on every inventory save would restart every etcd member at
once; that is why the server serves what init published and renders nothing itself.

Secrets never travel through the URL: certificates, keys, kubeconfigs and the encryption
config still go over SSH; a PodList carries only pod specs (hostPath mounts name files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bootstrap.errors import InputError, OperationError, WaitTimeout
from bootstrap.health.poll import poll
from bootstrap.inventory.model import COMPONENTS, MANIFESTS_DIR, Master
from bootstrap.model import FileSpec, RemoteHost
from bootstrap.node.view import node_agent
from bootstrap.pki.store import ensure_dir, read_optional, write_atomic
from bootstrap.run.session import Session
from bootstrap.transport.push import FileChange, classify

SERVED_DIR = "served"
TOKENS_FILE = "serve-tokens.json"
STATE_FILE_MODE = 0o600


# --- state files -------------------------------------------------------------------------


def served_dir(state_dir: Path) -> Path:
    return state_dir / SERVED_DIR


def published_path(state_dir: Path, node: str) -> Path:
    return served_dir(state_dir) / f"{node}.json"


def fetched_path(state_dir: Path, node: str) -> Path:
    return served_dir(state_dir) / f"{node}.fetched.json"


def tokens_path(state_dir: Path) -> Path:
    return state_dir / TOKENS_FILE


def load_tokens(state_dir: Path) -> dict[str, str]:
    data = read_optional(tokens_path(state_dir))
    if data is None:
        return {}
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InputError(
            f"{tokens_path(state_dir)} is not JSON: {exc}",
            hint="delete it; `bootstrap serve` generates new tokens (then re-run init)",
        ) from exc
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in doc.items()
    ):
        raise InputError(f"{tokens_path(state_dir)} must map node names to tokens")
    return dict(doc)


def ensure_tokens(state_dir: Path, nodes: Sequence[str]) -> dict[str, str]:
    """Per-node bearer tokens, generated once and kept (0600); new nodes get one."""
    tokens = load_tokens(state_dir)
    missing = [n for n in nodes if n not in tokens]
    for node in missing:
        tokens[node] = secrets.token_urlsafe(32)
    if missing or not tokens_path(state_dir).exists():
        ensure_dir(state_dir)
        write_atomic(tokens_path(state_dir), _json(tokens), STATE_FILE_MODE)
    return tokens


def _json(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


# --- documents -----------------------------------------------------------------------------


def pod_object(spec: FileSpec, node: str | None = None) -> dict[str, Any]:
    """The rendered manifest (YAML) as the object a PodList item holds."""
    where = f"{node}: " if node else ""
    try:
        doc = yaml.safe_load(spec.content)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(
            f"{where}{spec.path} as rendered is not YAML: {problem}{at}",
            hint="check the templates (--templates) and the inventory values they lay out",
        ) from exc
    if not isinstance(doc, dict) or doc.get("kind") != "Pod":
        raise InputError(
            f"{where}{spec.path} as rendered is not a Pod manifest",
            hint="check the templates (--templates) and the inventory values they lay out",
        )
    return doc


def podlist(pods: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A v1 PodList with the components in their rollout order."""
    items = [dict(pods[c]) for c in COMPONENTS if c in pods]
    items += [dict(pods[c]) for c in sorted(pods) if c not in COMPONENTS]
    return {"apiVersion": "v1", "kind": "PodList", "items": items}


def encode_document(pods: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The published form: canonical JSON (stable bytes, so an unchanged document is
    skipped by the kubelet)."""
    return _json(podlist(pods))


def as_yaml(document: bytes) -> bytes:
    return yaml.safe_dump(json.loads(document), sort_keys=True).encode("utf-8")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_published(state_dir: Path, node: str) -> dict[str, dict[str, Any]]:
    """component -> pod of what the node is currently served ({} when nothing)."""
    data = read_optional(published_path(state_dir, node))
    if data is None:
        return {}
    return parse_document(data, published_path(state_dir, node), node)


def parse_document(data: bytes, path: Path, node: str) -> dict[str, dict[str, Any]]:
    """A published document (a PodList, JSON) as component -> pod. It is the operator's
    to edit (docs/http-source.md), so a broken one is bad input naming the file."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("kind") != "PodList":
            raise ValueError("not a JSON PodList")
        items = doc.get("items") or []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ValueError("items is not a list of pods")
        return {str(item["metadata"]["name"]): item for item in items}
    except (ValueError, KeyError, TypeError) as exc:
        what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InputError(
            f"{path}: the document published for {node} is unreadable ({what})",
            hint="fix the file, or delete it and re-run `bootstrap init --delivery http`, "
            "which publishes it again",
        ) from exc


def publish(state_dir: Path, node: str, pods: Mapping[str, Mapping[str, Any]]) -> str:
    """Write the node's document atomically; returns its digest."""
    ensure_dir(served_dir(state_dir))
    data = encode_document(pods)
    write_atomic(published_path(state_dir, node), data, STATE_FILE_MODE)
    return digest(data)


def record_fetch(state_dir: Path, node: str, document_digest: str) -> None:
    """The server notes the last document a node fetched (only when it changes)."""
    path = fetched_path(state_dir, node)
    if read_fetched(state_dir, node) == document_digest:
        return
    doc = {"sha256": document_digest, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_atomic(path, _json(doc), STATE_FILE_MODE)


def read_fetched(state_dir: Path, node: str) -> str | None:
    data = read_optional(fetched_path(state_dir, node))
    if data is None:
        return None
    try:
        value = json.loads(data).get("sha256")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# --- pointing a node at its URL ---------------------------------------------------------------


def node_url(serve_url: str, node: str) -> str:
    return f"{serve_url.rstrip('/')}/nodes/{node}/pods"


def fetch_document(serve_url: str, node: str, token: str, ca_pem: bytes) -> tuple[int, bytes]:
    """GET the node's document as the node would (JSON form); (status, body)."""
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    request = urllib.request.Request(
        node_url(serve_url, node) + "?format=json",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise OperationError(
            f"cannot reach the manifest server {serve_url}: {exc}",
            hint="start it first: bootstrap serve --inventory FILE --state-dir DIR "
            "--listen ADDR:PORT (an address the masters can reach)",
        ) from exc


def _serve_url(session: Session) -> str:
    url = session.options.serve_url
    if not url:
        raise InputError(
            "--delivery http needs --serve-url (the URL of a running `bootstrap serve`)",
            hint="e.g. --serve-url https://10.213.5.1:8443",
        )
    return url


def connect_nodes(session: Session) -> None:
    """Check the server answers with our tokens, then point every kubelet at its URL."""
    serve_url = _serve_url(session)
    tokens = load_tokens(session.state_dir)
    missing = [m.name for m in session.masters if m.name not in tokens]
    if missing:
        raise InputError(
            f"no manifest-URL token for {', '.join(missing)} in {tokens_path(session.state_dir)}",
            hint="start `bootstrap serve` with the same --inventory and --state-dir first",
        )
    ca_pem = session.pki.ca().cert_pem
    for master in session.masters:
        status, _body = fetch_document(serve_url, master.name, tokens[master.name], ca_pem)
        if status not in (200, 404):  # 404: nothing published for the node yet
            raise OperationError(
                f"manifest server {serve_url} answered {status} for {master.name}'s token",
                hint="is it serving this --state-dir? `bootstrap serve` and `init` must "
                "share the state dir",
            )

    def point(master: Master, host: RemoteHost) -> None:
        url = node_url(serve_url, master.name)
        agent = node_agent(host)
        spec = agent.manifest_url_source(url, tokens[master.name]) if agent else None
        if agent is None or spec is None:
            session.console.event(
                "delivery",
                f"kubelet must fetch {url} (staticPodURL + staticPodURLHeader, "
                "see docs/http-source.md); waiting for its first fetch",
                master.name,
            )
            return
        change = classify(spec, host.stat_files([spec.path]).get(spec.path))
        if change.writes:
            host.write_file_atomic(spec)
            session.record_written(master.name, [change])
            session.console.event("delivery", f"{agent.title} pointed at {url}", master.name)

    session.each_host(point)


# --- the rollout, published instead of written ---------------------------------------------


def _host_manifest(session: Session, name: str, component: str) -> FileChange:
    path = f"{MANIFESTS_DIR}/{component}.yaml"
    return next(c for c in session.diff(name) if c.spec.path == path)


def _publish_change(session: Session, node: str, component: str, pod: Mapping[str, Any]) -> None:
    """Count a publish in init's summary like a written file."""
    content = json.dumps(pod, sort_keys=True).encode("utf-8")
    spec = FileSpec(f"{SERVED_DIR}/{node}.json#{component}", content, STATE_FILE_MODE)
    session.record_written(node, [FileChange(spec, "change", None)])


def _wait_fetched(session: Session, phase: str, wanted: Mapping[str, str]) -> None:
    """Until every node fetched the document with the given digest."""
    timeout = session.inventory.timeouts.component_ready
    nodes = ", ".join(sorted(wanted))
    session.console.event(phase, f"waiting for {nodes} to fetch the new document")

    def fetched() -> tuple[bool, list[str]]:
        late = [n for n, d in wanted.items() if read_fetched(session.state_dir, n) != d]
        return not late, late

    def timed_out(late: list[str]) -> WaitTimeout:
        return WaitTimeout(
            f"{', '.join(late)} did not fetch its manifest document within {timeout:g}s",
            hint="is `bootstrap serve` running on this state dir, and is each kubelet's "
            "staticPodURL pointed at it? (docs/http-source.md)",
        )

    poll(
        f"{nodes} to fetch the new document",
        fetched,
        timeout,
        session.inventory.timeouts.poll_interval,
        timeout_error=timed_out,
    )


def deliver(
    session: Session,
    phase: str,
    component: str,
    masters: Sequence[Master],
    support: Callable[[FileChange], bool] | None = None,
) -> None:
    """Publish ``component`` to each master and wait until each node fetched it."""
    if not masters:
        return
    if support is not None:
        from bootstrap.workflow.steps import push_subset

        push_subset(session, phase, support, masters)
    wanted: dict[str, str] = {}
    for master in masters:
        pod = pod_object(session.plans[master.name].manifests[component], master.name)
        pods = load_published(session.state_dir, master.name)
        if pods.get(component) != pod:
            pods[component] = pod
            _publish_change(session, master.name, component, pod)
            session.console.event(phase, f"published {component}", master.name)
        wanted[master.name] = publish(session.state_dir, master.name, pods)
    _wait_fetched(session, phase, wanted)


def switch_from_file(
    session: Session,
    phase: str,
    component: str,
    master: Master,
    support: Callable[[FileChange], bool] | None,
    settle: Callable[[], None],
) -> None:
    """Move one master's pod from its manifest file to the URL, never defining it twice.

    A real kubelet keys a static pod by its source: the URL's pod is a second pod beside
    the file's, refused at admission (NodePorts: the manifests declare hostPorts) while
    the file's runs, and never admitted later while the document stays the same. So: the
    file goes first, the node stops the pod, and only then does the document gain it;
    then the new pod must run and pass the health gate (``settle``). If any step fails,
    the pod leaves the document again and the file comes back: the master keeps its pod.
    """
    from bootstrap.health import waits
    from bootstrap.transport.push import backup_dir_name
    from bootstrap.workflow.steps import push_subset

    name = master.name
    host = session.host(name)
    path = f"{MANIFESTS_DIR}/{component}.yaml"
    on_host = _host_manifest(session, name, component)
    assert on_host.remote is not None
    original = FileSpec(path, host.read_file(path), on_host.remote.mode)
    if support is not None:
        push_subset(session, phase, support, [master])
    # The node fetches its document, without this pod, before the file goes. A kubelet
    # stops no pod until every source it has has answered once (sourcesReady; a 404 is
    # no answer), so without a fetched document the file's pod would run on. And a
    # switch that published before removing the file (older versions) may have left a
    # refused copy of the URL's pod in the kubelet, which only a document without it clears.
    pods = load_published(session.state_dir, name)
    pods.pop(component, None)
    _wait_fetched(session, phase, {name: publish(session.state_dir, name, pods)})
    host.backup_files([path], backup_dir_name())
    host.remove_files([path])
    session.console.event(phase, f"removed {path} (to be served)", name)
    try:
        waits.wait_until_stopped(session, name, component)
        waits.wait_briefly_until_gone(session, name, component)
        deliver(session, phase, component, [master])
        _wait_admitted(session, phase, component, master)
        settle()
    except BaseException:
        _restore_file(session, phase, component, master, original)
        raise


# How long each offer of a served pod is given to be created before it is taken out of
# the document and offered again; the last offer gets the component's full timeout.
OFFER_SECONDS = (20.0, 40.0, 60.0)


def _wait_admitted(session: Session, phase: str, component: str, master: Master) -> None:
    """Until the node runs the served pod. A kubelet that refused it at admission (the
    file's pod still counted while the kubelet finished terminating it) never looks at it
    again while the document stays the same: a pod not even created within the offer's
    time is taken out of the document and offered again, up to three times, then waited
    for in full (docs/http-source.md)."""
    from bootstrap.health import waits
    from bootstrap.node.view import read_pod_states

    name = master.name
    for seconds in OFFER_SECONDS:
        with contextlib.suppress(WaitTimeout):
            waits.wait_until_running(session, name, component, timeout=seconds)
            return
        if read_pod_states(session.host(name))[component].phase != "Absent":
            break  # created: starting slowly, waited for in full below
        session.console.event(
            phase, f"{component} not admitted by the node: offered again", name
        )
        pods = load_published(session.state_dir, name)
        pods.pop(component, None)
        _wait_fetched(session, phase, {name: publish(session.state_dir, name, pods)})
        waits.wait_briefly_until_gone(session, name, component)
        deliver(session, phase, component, [master])
    waits.wait_until_running(session, name, component)


def _restore_file(
    session: Session, phase: str, component: str, master: Master, original: FileSpec
) -> None:
    """A failed switch: the pod leaves the node's document (and, if the node had fetched
    it, stops), then its manifest file is written back. Each step is tried; the file is
    always written back."""
    from bootstrap.health import waits

    name = master.name
    problems: list[str] = []
    try:
        pods = load_published(session.state_dir, name)
        served = digest(encode_document(pods)) if component in pods else None
        if served is not None:  # published: the URL's pod may be running
            pods.pop(component)
            without = publish(session.state_dir, name, pods)
            if read_fetched(session.state_dir, name) == served:  # the node saw the pod
                _wait_fetched(session, phase, {name: without})
            waits.wait_until_stopped(session, name, component)
    except Exception as exc:  # already failing: whatever else fails, the file goes back
        problems.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    session.host(name).write_file_atomic(original)
    note = f" (after: {'; '.join(problems)})" if problems else ""
    session.console.event(
        phase, f"switch failed: {original.path} written back, the pod runs from it{note}", name
    )


@dataclass(frozen=True)
class HttpDelivery:
    """Pod specs published for ``bootstrap serve``; a node's file copy is switched over
    one master at a time (`switch_from_file`)."""

    support: Callable[[FileChange], bool] | None = None
    first_settles: bool = False

    def classify(
        self, session: Session, component: str
    ) -> tuple[list[Master], list[tuple[Master, bool]]]:
        fresh: list[Master] = []
        rolling: list[tuple[Master, bool]] = []  # (master, its pod restarts)
        for master in session.masters:
            desired = pod_object(session.plans[master.name].manifests[component], master.name)
            served = load_published(session.state_dir, master.name).get(component)
            on_host = _host_manifest(session, master.name, component)
            if on_host.remote is not None:  # file-delivered copy: switch over, one at a time
                rolling.append((master, on_host.action == "change"))
            elif served is None:
                fresh.append(master)
            elif served != desired:
                rolling.append((master, True))
        return fresh, rolling

    def deliver(self, session: Session, phase: str, component: str, masters: list[Master]) -> None:
        deliver(session, phase, component, masters, self.support)

    def replace(
        self, session: Session, phase: str, component: str, master: Master,
        settle: Callable[[], None],
    ) -> None:
        if _host_manifest(session, master.name, component).remote is not None:
            switch_from_file(session, phase, component, master, self.support, settle)
            return
        self.deliver(session, phase, component, [master])
        settle()


def roll_http(
    session: Session,
    phase: str,
    component: str,
    wait: Callable[[Session, Sequence[str]], None],
    *,
    support: Callable[[FileChange], bool] | None = None,
    first_ahead: bool = False,
) -> None:
    """``steps.roll_out`` for http delivery: new pods together, changed ones master by master."""
    from bootstrap.workflow.steps import roll_out

    roll_out(session, phase, component, HttpDelivery(support), wait, first_ahead=first_ahead)


def run_etcd_http(session: Session) -> None:
    from bootstrap.health import waits

    connect_nodes(session)
    roll_http(session, "etcd", "etcd", waits.wait_for_etcd_quorum, first_ahead=True)


def run_control_plane_http(session: Session) -> None:
    from bootstrap.health import waits
    from bootstrap.workflow import steps

    connect_nodes(session)
    roll_http(
        session,
        "control-plane",
        "kube-apiserver",
        steps.wait_apiservers,
        support=steps.is_apiserver_config,
    )
    waits.ensure_cluster_admins_binding(session)
    for component in ("kube-controller-manager", "kube-scheduler"):
        roll_http(session, "control-plane", component, steps.wait_component(component))
    steps.wait_for_leases(session)


# --- plan ----------------------------------------------------------------------------------


def show_plan_http(session: Session) -> int:
    """`plan --delivery http`: support files over SSH as usual; manifests as publishes."""
    from bootstrap.transport.push import summarize

    serve_url = session.options.serve_url or "<--serve-url>"
    changed_hosts = 0
    for master in session.masters:
        changes = [c for c in session.diff(master.name) if not c.is_manifest]
        pending = [c for c in changes if c.writes]
        lines = [f"  {c.action:<7} {c.spec.path}{' [secret]' if c.spec.secret else ''}"
                 for c in pending]
        served = load_published(session.state_dir, master.name)
        restarts: list[str] = []
        diffs: list[str] = []
        for component in COMPONENTS:
            desired = pod_object(session.plans[master.name].manifests[component], master.name)
            on_host = _host_manifest(session, master.name, component)
            old = served.get(component)
            if on_host.remote is not None:
                lines.append(f"  remove  {on_host.spec.path} (served instead)")
                restarts.append(component)  # the switch stops the file's pod first
            if old != desired:
                action = "create" if old is None else "change"
                url = node_url(serve_url, master.name)
                lines.append(f"  publish {component} -> {url} ({action})")
                if old is not None:
                    restarts.append(component)
                    diffs.append(_pod_diff(component, old, desired))
                elif on_host.remote is None:
                    restarts.append(component)
        count = len(lines)
        session.console.out(
            f"== {master.name} ({master.address}): {summarize(changes)}; "
            f"{count} delivery change(s)"
        )
        if count:
            changed_hosts += 1
        for line in lines:
            session.console.out(line)
        for text in diffs:
            session.console.out(text)
        if restarts:
            names = ", ".join(sorted(set(restarts)))
            session.console.out("  static pods that would (re)start: " + names)
    if changed_hosts == 0:
        session.console.out("plan: 0 changed: every host and served document matches")
    return 0


def _pod_diff(component: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    import difflib

    a = yaml.safe_dump(dict(old), sort_keys=True).splitlines(keepends=True)
    b = yaml.safe_dump(dict(new), sort_keys=True).splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(a, b, fromfile=f"{component} (served)", tofile=f"{component} (new)")
    )
