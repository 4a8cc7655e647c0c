"""The lab's process-mode kubelet (lab/runner/): the one place that knows it exists.

It runs the static pods as plain processes and writes what a real node would answer
through ``crictl`` into a JSON status file; each pod's output goes to a log file. It
reads the kubelet's second static-pod source, a manifest URL, from its own config file
(a real kubelet's staticPodURL is its operator's to set). bootstrap.node.view picks this
NodeAgent for a host that has the status file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bootstrap.inventory.model import COMPONENTS, PKI_DIR
from bootstrap.model import FileSpec
from bootstrap.node.podstate import PodState, last_run_excerpt, unreadable

NAME = "lab-runner"
RUNNER_DIR = "/var/lib/kubelet/lab-runner"
STATUS_FILE = f"{RUNNER_DIR}/status.json"
# Its URL-source settings (lab/runner/urlconfig.py): they hold the node's token (0600).
CONFIG_FILE = f"{RUNNER_DIR}/config.json"
URL_CA_FILE = f"{PKI_DIR}/ca.crt"  # the cluster CA, on every master from the certs phase
HTTP_CHECK_FREQUENCY = 2.0
POD_LOGS = "/var/log/pods"
START_MARKER = "lab-runner: start container"  # the runner's line before each (re)start


def parse_status(body: str) -> dict[str, PodState]:
    """The runner's status file. It comes from the host: whatever it holds becomes
    "Unknown" with the reason, never an exception."""
    try:
        return _parse_status(body)
    except (ValueError, TypeError, AttributeError) as exc:
        return unreadable(f"unreadable lab runner status: {exc}", NAME)


def _parse_status(body: str) -> dict[str, PodState]:
    doc = json.loads(body)
    pods: Mapping[str, Any] = doc.get("pods") or {}
    states: dict[str, PodState] = {}
    for component in COMPONENTS:
        pod = pods.get(f"kube-system/{component}")
        if not isinstance(pod, dict):
            states[component] = PodState(
                component, "Absent", False, 0, "no such pod on the node", NAME
            )
            continue
        states[component] = PodState(
            component,
            str(pod.get("phase") or "Unknown"),
            bool(pod.get("ready")),
            int(pod.get("restartCount") or 0),
            pod.get("reason") or None,
            NAME,
            pod.get("configHash") or None,
        )
    return states


def url_config(url: str, token: str) -> bytes:
    """The runner's URL-source settings (holds the token: written 0600)."""
    doc = {
        "manifestUrl": url,
        "headers": {"Authorization": f"Bearer {token}"},
        "manifestUrlCA": URL_CA_FILE,
        "httpCheckFrequency": HTTP_CHECK_FREQUENCY,
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


class LabRunnerNode:
    """The NodeAgent of a lab host (the status file is its mark)."""

    name = NAME
    title = "lab kubelet"
    logs_hint = "`python -m lab logs HOST POD`"
    detect = f"[ -f {STATUS_FILE} ]"
    read_script = f"cat {STATUS_FILE}"
    kubelet_evidence = f"test -f {STATUS_FILE} && echo {NAME}"

    def parse_states(self, body: str) -> dict[str, PodState]:
        return parse_status(body)

    def log_script(self, component: str) -> str:
        log = f"{POD_LOGS}/{component}.log"
        return f"[ -f {log} ] && tail -n 400 {log}"

    def log_excerpt(self, text: str) -> str:
        return last_run_excerpt(text, START_MARKER)

    def manifest_url_source(self, url: str, token: str) -> FileSpec | None:
        return FileSpec(CONFIG_FILE, url_config(url, token), 0o600, secret=True)


LAB_RUNNER = LabRunnerNode()
