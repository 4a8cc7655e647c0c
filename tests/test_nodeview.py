"""bootstrap.node.view: which NodeAgent answers for a host, decided by the host's own
answer to one shell script (run here by a real `sh`), and the lab runner's adapter kept
in step with the lab's own definitions of its files."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

import pytest

from bootstrap.inventory.model import COMPONENTS
from bootstrap.model import CommandResult, FileSpec
from bootstrap.node import cri, labrunner, preflight, view
from bootstrap.node.podstate import PodState
from lab import config
from lab.runner import urlconfig


class ShellHost:
    """A host whose commands run in a local `sh` (the scripts are what goes over SSH)."""

    name = "local"

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def run(self, script: str, *, sudo: bool, check: bool, timeout: float) -> CommandResult:
        self.scripts.append(script)
        done = subprocess.run(["sh", "-c", script], capture_output=True, timeout=timeout)
        return CommandResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class FakeAgent:
    """A NodeAgent whose detection and answers are plain shell (true/false, echo)."""

    name: str
    detect: str
    title: str = "kubelet"
    logs_hint: str = "its logs"
    kubelet_evidence: str = ""

    @property
    def read_script(self) -> str:
        return f"echo '{self.name} says' Running"

    def parse_states(self, body: str) -> dict[str, PodState]:
        phase = body.split()[-1]
        return {c: PodState(c, phase, None, 0, body.strip(), self.name) for c in COMPONENTS}

    def log_script(self, component: str) -> str:
        return f"printf 'start\\nline of {component}\\n'"

    def log_excerpt(self, text: str) -> str:
        return text.strip().splitlines()[-1]

    def manifest_url_source(self, url: str, token: str) -> FileSpec | None:
        return None


def test_the_first_agent_that_recognises_the_host_answers_in_one_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no, yes, also = FakeAgent("no", "false"), FakeAgent("yes", "true"), FakeAgent("also", "true")
    monkeypatch.setattr(view, "AGENTS", (no, yes, also))
    host = ShellHost()
    states = view.read_pod_states(host)  # type: ignore[arg-type]
    assert {s.source for s in states.values()} == {"yes"}
    assert states["etcd"].reason == "yes says Running" and states["etcd"].running
    assert len(host.scripts) == 1  # probing is part of the question: one round trip
    assert view.pod_log_tail(host, "etcd") == "line of etcd"  # type: ignore[arg-type]
    assert view.node_agent(host) is yes  # type: ignore[arg-type]


def test_a_host_no_agent_recognises_reports_unknown_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    agents = (FakeAgent("a", "false"), FakeAgent("b", "[ -f /nonexistent/x ]"))
    monkeypatch.setattr(view, "AGENTS", agents)
    host = ShellHost()
    states = view.read_pod_states(host)  # type: ignore[arg-type]
    assert set(states) == set(COMPONENTS)
    assert all(s.phase == "Unknown" and s.source == view.NONE for s in states.values())
    assert view.pod_log_tail(host, "etcd") == ""  # type: ignore[arg-type]
    assert view.node_agent(host) is None  # type: ignore[arg-type]


def test_the_lab_runner_is_probed_before_crictl_and_preflight_hears_both() -> None:
    assert view.AGENTS == (labrunner.LAB_RUNNER, cri.CRI)
    assert all(a.kubelet_evidence in view.KUBELET_EVIDENCE for a in view.AGENTS)
    # preflight's Kubelet facts are exactly what the agents' evidence prints on the host
    printed = subprocess.run(["sh", "-c", view.KUBELET_EVIDENCE], capture_output=True).stdout
    facts = preflight.gather(ShellHost())  # type: ignore[arg-type]
    assert facts.kubelet == tuple(printed.decode().split())
    assert view.logs_hint("cri") == cri.CRI.logs_hint
    assert view.logs_hint(view.NONE)


def test_the_runner_adapter_names_the_labs_own_files() -> None:
    """The adapter's copy of the runner's paths, checked against the lab's definitions."""
    assert labrunner.STATUS_FILE == config.HOST_RUNNER_STATUS
    assert labrunner.POD_LOGS == config.HOST_POD_LOGS
    assert urlconfig.default_config_path(config.HOST_RUNNER_STATUS) == labrunner.CONFIG_FILE


def test_the_runner_reads_the_url_source_file_the_adapter_writes() -> None:
    spec = labrunner.LAB_RUNNER.manifest_url_source("https://10.213.3.1:8443/nodes/m1/pods", "t0k")
    assert spec is not None and spec.mode == 0o600 and spec.secret
    settings = urlconfig.parse_config(spec.content, default_frequency=20.0)
    assert settings is not None
    assert settings.url == "https://10.213.3.1:8443/nodes/m1/pods"
    assert dict(settings.headers) == {"Authorization": "Bearer t0k"}
    assert settings.ca_file == "/etc/kubernetes/pki/ca.crt"
    assert settings.frequency == labrunner.HTTP_CHECK_FREQUENCY
    assert cri.CRI.manifest_url_source("https://x/nodes/m1/pods", "t") is None


def test_runner_status_and_log_parsing() -> None:
    doc = {"pods": {"kube-system/etcd": {"phase": "Running", "ready": True, "restartCount": 2,
                                         "configHash": "abc"}}}
    states = labrunner.parse_status(json.dumps(doc))
    assert states["etcd"] == PodState("etcd", "Running", True, 2, None, "lab-runner", "abc")
    assert states["kube-apiserver"].phase == "Absent"
    assert labrunner.parse_status("{not json")["etcd"].phase == "Unknown"
    start = f"==== t {labrunner.START_MARKER} etcd (restart 1): etcd"
    log = f"old run\n{start}\nflag provided but not defined\n"
    assert labrunner.LAB_RUNNER.log_excerpt(log) == "flag provided but not defined"
