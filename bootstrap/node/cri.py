"""A real node: the kubelet runs the static pods as containers, asked through ``crictl``.

crictl's endpoint is the node's (/etc/crictl.yaml or crictl's default, containerd's
/run/containerd/containerd.sock). Besides every container, the answer holds the images the
node has and the image each static pod's manifest names, so a pod with no container yet
can say its image is missing (a pull in progress, or one that cannot succeed).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from bootstrap.inventory.model import COMPONENTS, MANIFESTS_DIR
from bootstrap.model import FileSpec
from bootstrap.node.podstate import PodState, last_run_excerpt, unreadable

NAME = "cri"
IMAGES_MARK = "@@images"
WANTED_MARK = "@@wanted"

_WANTED = "".join(
    f'f={MANIFESTS_DIR}/{c}.yaml; [ -f "$f" ] && '
    f'echo "{c} $(sed -n \'s/^ *image: *//p\' "$f" | head -n 1)"; '
    for c in COMPONENTS
)

_CRI_PHASES: dict[str, tuple[str, str | None]] = {  # CRI state -> (phase, reason)
    "CONTAINER_RUNNING": ("Running", None),
    "CONTAINER_CREATED": ("Waiting", "ContainerCreating"),
    "CONTAINER_EXITED": ("Exited", "CONTAINER_EXITED"),
}


def _json_doc(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text.strip() or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def parse_crictl(body: str) -> dict[str, PodState]:
    """``crictl ps -a -o json``, optionally followed by the node's images and the images
    the manifests name (the sections of ``CriNode.read_script``). From the host: an
    answer of an unexpected shape becomes "Unknown" with the reason, never an exception."""
    try:
        return _parse_crictl(body)
    except (ValueError, TypeError, AttributeError) as exc:
        return unreadable(f"unreadable crictl answer: {exc}", NAME)


def _parse_crictl(body: str) -> dict[str, PodState]:
    ps_text, _, rest = body.partition(f"\n{IMAGES_MARK}\n")
    images_text, _, wanted_text = rest.partition(f"\n{WANTED_MARK}\n")
    containers = _json_doc(ps_text).get("containers") or []
    present = {
        tag for image in _json_doc(images_text).get("images") or [] for tag in
        image.get("repoTags") or []
    }
    wanted = dict(
        line.split(" ", 1) for line in wanted_text.splitlines() if " " in line.strip()
    )
    latest: dict[str, dict[str, Any]] = {}
    for c in containers:
        name = (c.get("metadata") or {}).get("name")
        namespace = (c.get("labels") or {}).get("io.kubernetes.pod.namespace", "kube-system")
        if namespace != "kube-system":  # a user's pod may have a container named etcd
            continue
        if name in COMPONENTS and int(c.get("createdAt") or 0) >= int(
            (latest.get(name) or {}).get("createdAt") or 0
        ):
            latest[name] = c
    states: dict[str, PodState] = {}
    for component in COMPONENTS:
        c = latest.get(component)
        if c is None:
            image = wanted.get(component, "").strip()
            if image and images_text and image not in present:
                reason = f"image {image} is not on the node (being pulled, or the pull fails)"
                states[component] = PodState(component, "Waiting", False, 0, reason, NAME)
            else:
                states[component] = PodState(
                    component, "Absent", False, 0, "no container", NAME
                )
            continue
        state = str(c.get("state"))
        phase, why = _CRI_PHASES.get(state, ("Unknown", state))
        restarts = int(
            (c.get("annotations") or {}).get("io.kubernetes.container.restartCount") or 0
        )
        states[component] = PodState(
            component, phase, None, restarts, why, NAME, str(c.get("id") or "") or None
        )
    return states


class CriNode:
    """The NodeAgent of a node whose kubelet runs containers through a CRI runtime."""

    name = NAME
    title = "kubelet"
    logs_hint = "`crictl logs` on the node"
    detect = "command -v crictl >/dev/null 2>&1"
    read_script = (
        f"crictl ps -a -o json 2>/dev/null;\necho; echo {IMAGES_MARK}; "
        f"crictl images -o json 2>/dev/null;\necho; echo {WANTED_MARK}; {_WANTED}"
    )
    kubelet_evidence = (
        "command -v kubelet 2>/dev/null\npgrep -x kubelet >/dev/null 2>&1 && echo running"
    )

    def parse_states(self, body: str) -> dict[str, PodState]:
        return parse_crictl(body)

    def log_script(self, component: str) -> str:
        name = shlex.quote(component)
        return (
            f"id=$(crictl ps -a --name {name} -q | head -n 1); "
            f'[ -n "$id" ] && crictl logs --tail 400 "$id" 2>&1'
        )

    def log_excerpt(self, text: str) -> str:
        return last_run_excerpt(text)

    def manifest_url_source(self, url: str, token: str) -> FileSpec | None:
        return None  # the kubelet's own config (staticPodURL): the operator's


CRI = CriNode()
