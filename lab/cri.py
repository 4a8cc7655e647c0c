"""A kubelet-mode host's pods, as crictl sees them (for `lab status`, `logs`, tests).

Every call runs ``crictl`` inside the host (its private /run holds containerd's socket at
the default path). Pods are named as the runner names them, ``kube-system/etcd``, and
also answer to the kubelet's names (``etcd-m1``) and the bare container name (``etcd``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lab.config import LabError

Exec = Callable[[str, list[str]], Any]  # api.exec_in(host, argv) -> CompletedProcess
SOCKET = "unix:///run/containerd/containerd.sock"
# The endpoint named: crictl warns on stderr when it has to guess (no /etc/crictl.yaml,
# which the hosts share with the machine), and `lab logs` passes stderr through.
CRICTL = ["crictl", "--runtime-endpoint", SOCKET, "--image-endpoint", SOCKET]


def _crictl_json(exec_in: Exec, host: str, command: str, *args: str) -> dict[str, Any]:
    # Options before the arguments: crictl (urfave/cli) takes what follows an argument
    # as further arguments.
    proc = exec_in(host, [*CRICTL, command, "-o", "json", *args])
    if proc.returncode != 0:
        raise LabError(f"{host}: crictl {command} {' '.join(args)}: "
                       + proc.stderr.decode(errors="replace").strip()[-300:])
    data = json.loads(proc.stdout or b"{}")
    return data if isinstance(data, dict) else {}


def containers(exec_in: Exec, host: str) -> list[dict[str, Any]]:
    """All containers (running and exited), newest first."""
    items = _crictl_json(exec_in, host, "ps", "-a").get("containers") or []
    return sorted(items, key=lambda c: int(c.get("createdAt") or 0), reverse=True)


def _label(c: dict[str, Any], key: str) -> str:
    return str((c.get("labels") or {}).get(f"io.kubernetes.{key}") or "")


def matches(c: dict[str, Any], pod: str) -> bool:
    name = pod.split("/", 1)[-1]
    return name in (_label(c, "pod.name"), _label(c, "container.name"))


def pods(exec_in: Exec, host: str) -> list[dict[str, Any]]:
    """One entry per pod sandbox that has containers: the newest container's state."""
    sandboxes = {p["id"]: p for p in _crictl_json(exec_in, host, "pods").get("items") or []}
    seen: dict[str, dict[str, Any]] = {}
    for c in containers(exec_in, host):
        key = f"{_label(c, 'pod.namespace')}/{_label(c, 'container.name')}"
        if key in seen:
            continue
        sandbox = sandboxes.get(c.get("podSandboxId") or "") or {}
        running = c.get("state") == "CONTAINER_RUNNING"
        seen[key] = {
            "name": key,
            "pod": _label(c, "pod.name"),
            "phase": "Running" if running else "Exited",
            "ready": None,  # the CRI does not know readiness; the kubelet's API status does
            "restartCount": int(
                (c.get("annotations") or {}).get("io.kubernetes.container.restartCount") or 0
            ),
            "reason": None if running else str(c.get("state")),
            "containerId": c.get("id"),
            "sandbox": sandbox.get("state"),
        }
    return sorted(seen.values(), key=lambda p: str(p["name"]))


def newest_container(exec_in: Exec, host: str, pod: str, running: bool = False) -> dict[str, Any]:
    for c in containers(exec_in, host):
        if matches(c, pod) and (not running or c.get("state") == "CONTAINER_RUNNING"):
            return c
    state = "running " if running else ""
    raise LabError(f"{host}: no {state}container of pod {pod!r}", exit_code=1)


def container_pid(exec_in: Exec, host: str, pod: str) -> int:
    """The in-host PID of the pod's running container (crictl inspect's info.pid)."""
    c = newest_container(exec_in, host, pod, running=True)
    info = _crictl_json(exec_in, host, "inspect", str(c["id"])).get("info") or {}
    pid = int(info.get("pid") or 0)
    if pid <= 0:
        raise LabError(f"{host}: container {c['id']} of {pod!r} has no process", exit_code=1)
    return pid


def logs(exec_in: Exec, host: str, pod: str) -> bytes:
    c = newest_container(exec_in, host, pod)
    proc = exec_in(host, [*CRICTL, "logs", str(c["id"])])
    return bytes(proc.stdout) + bytes(proc.stderr)
