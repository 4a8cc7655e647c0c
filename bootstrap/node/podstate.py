"""What the node says about its static pods, read over SSH.

On a lab host the process-mode runner keeps a JSON status file (the way we would ask
``crictl`` on a real node); on a kubelet node we ask ``crictl``. Both become ``PodState``.
One remote command per host covers both cases.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bootstrap.inventory.model import COMPONENTS, MANIFESTS_DIR
from bootstrap.model import RemoteHost

LAB_RUNNER_STATUS = "/var/lib/kubelet/lab-runner/status.json"
_IMAGES_MARK = "@@images"
_WANTED_MARK = "@@wanted"
LAB_POD_LOGS = "/var/log/pods"

# On a CRI node: every container (crictl's endpoint is the node's: /etc/crictl.yaml or
# crictl's default, containerd's /run/containerd/containerd.sock), then the images the
# node has and the image each static pod's manifest names, so a pod with no container yet
# can say its image is missing (a pull in progress, or one that cannot succeed).
_WANTED = "".join(
    f'f={MANIFESTS_DIR}/{c}.yaml; [ -f "$f" ] && '
    f'echo "{c} $(sed -n \'s/^ *image: *//p\' "$f" | head -n 1)"; '
    for c in COMPONENTS
)
_READ_SCRIPT = f"""
if [ -f {LAB_RUNNER_STATUS} ]; then echo lab; cat {LAB_RUNNER_STATUS};
elif command -v crictl >/dev/null 2>&1; then echo cri; crictl ps -a -o json 2>/dev/null;
echo; echo {_IMAGES_MARK}; crictl images -o json 2>/dev/null;
echo; echo {_WANTED_MARK}; {_WANTED}
else echo none; fi
"""


@dataclass(frozen=True)
class PodState:
    component: str
    phase: str  # Running, Waiting, Failed, ImageUnavailable, Exited, Absent, Unknown
    ready: bool | None  # None: the source cannot tell
    restarts: int
    reason: str | None
    source: str  # "lab-runner" | "cri" | "none"
    # Changes when the node adopts a new manifest for the pod (lab: the runner's config
    # hash; CRI: the container id), so a rollout can tell "restarted with the new spec".
    instance: str | None = None

    @property
    def running(self) -> bool:
        return self.phase == "Running"

    def describe(self) -> str:
        text = self.phase
        if self.reason:
            text += f" ({self.reason})"
        return text


def read_pod_states(host: RemoteHost) -> dict[str, PodState]:
    result = host.run(_READ_SCRIPT, sudo=True, check=False, timeout=20)
    text = result.stdout.decode("utf-8", "replace")
    kind, _, body = text.partition("\n")
    kind = kind.strip()
    if kind == "lab":
        return parse_lab_status(body)
    if kind == "cri":
        return parse_crictl(body)
    return {
        c: PodState(c, "Unknown", None, 0, "no kubelet status source on the host", "none")
        for c in COMPONENTS
    }


def _unreadable(reason: str, source: str) -> dict[str, PodState]:
    return {c: PodState(c, "Unknown", None, 0, reason, source) for c in COMPONENTS}


def parse_lab_status(body: str) -> dict[str, PodState]:
    """The runner's status file. It comes from the host: whatever it holds becomes
    "Unknown" with the reason, never an exception."""
    try:
        return _parse_lab_status(body)
    except (ValueError, TypeError, AttributeError) as exc:
        return _unreadable(f"unreadable lab runner status: {exc}", "lab-runner")


def _parse_lab_status(body: str) -> dict[str, PodState]:
    doc = json.loads(body)
    pods: Mapping[str, Any] = doc.get("pods") or {}
    states: dict[str, PodState] = {}
    for component in COMPONENTS:
        pod = pods.get(f"kube-system/{component}")
        if not isinstance(pod, dict):
            states[component] = PodState(
                component, "Absent", False, 0, "no such pod on the node", "lab-runner"
            )
            continue
        states[component] = PodState(
            component,
            str(pod.get("phase") or "Unknown"),
            bool(pod.get("ready")),
            int(pod.get("restartCount") or 0),
            pod.get("reason") or None,
            "lab-runner",
            pod.get("configHash") or None,
        )
    return states


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
    the manifests name (the sections of ``_READ_SCRIPT``). From the host: an answer of
    an unexpected shape becomes "Unknown" with the reason, never an exception."""
    try:
        return _parse_crictl(body)
    except (ValueError, TypeError, AttributeError) as exc:
        return _unreadable(f"unreadable crictl answer: {exc}", "cri")


def _parse_crictl(body: str) -> dict[str, PodState]:
    ps_text, _, rest = body.partition(f"\n{_IMAGES_MARK}\n")
    images_text, _, wanted_text = rest.partition(f"\n{_WANTED_MARK}\n")
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
                states[component] = PodState(component, "Waiting", False, 0, reason, "cri")
            else:
                states[component] = PodState(
                    component, "Absent", False, 0, "no container", "cri"
                )
            continue
        state = str(c.get("state"))
        phase, why = _CRI_PHASES.get(state, ("Unknown", state))
        restarts = int(
            (c.get("annotations") or {}).get("io.kubernetes.container.restartCount") or 0
        )
        states[component] = PodState(
            component, phase, None, restarts, why, "cri", str(c.get("id") or "") or None
        )
    return states


LOG_HEAD_LINES = 10
LOG_TAIL_LINES = 20
_LAB_START_MARKER = "lab-runner: start container"


def pod_log_tail(host: RemoteHost, component: str) -> str:
    """The component's output since its last start: the lab runner's file or `crictl logs`.

    Long outputs keep their head too: a program that dies on a bad flag prints the reason
    first and a page of usage after it.
    """
    lab_log = f"{LAB_POD_LOGS}/{component}.log"
    name = shlex.quote(component)
    script = (
        f"if [ -f {lab_log} ]; then tail -n 400 {lab_log}; "
        f"elif command -v crictl >/dev/null 2>&1; then "
        f"id=$(crictl ps -a --name {name} -q | head -n 1); "
        f'[ -n "$id" ] && crictl logs --tail 400 "$id" 2>&1; fi'
    )
    result = host.run(script, sudo=True, check=False, timeout=20)
    return last_run_excerpt(result.stdout.decode("utf-8", "replace"))


def last_run_excerpt(text: str) -> str:
    lines = text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if _LAB_START_MARKER in line]
    if starts:
        lines = lines[starts[-1] + 1 :]
    if len(lines) <= LOG_HEAD_LINES + LOG_TAIL_LINES:
        return "\n".join(lines)
    skipped = len(lines) - LOG_HEAD_LINES - LOG_TAIL_LINES
    return "\n".join(
        [*lines[:LOG_HEAD_LINES], f"... ({skipped} lines) ...", *lines[-LOG_TAIL_LINES:]]
    )
