"""Which kind of node a host is, decided here and only here, by probing the host.

Every question about the node's static pods goes through a NodeAgent
(bootstrap.node.podstate): the first of ``AGENTS`` whose ``detect`` condition holds on
the host answers. The probe is part of the question's own remote command, so asking
stays one round trip per host, and a host whose kubelet comes up later is seen as it is
now, not as it was.
"""

from __future__ import annotations

from collections.abc import Callable

from bootstrap.inventory.model import COMPONENTS
from bootstrap.model import RemoteHost
from bootstrap.node.cri import CRI
from bootstrap.node.labrunner import LAB_RUNNER
from bootstrap.node.podstate import NodeAgent, PodState

# In probing order: a lab host may have crictl installed too; its pods are the runner's.
AGENTS: tuple[NodeAgent, ...] = (LAB_RUNNER, CRI)
NONE = "none"  # PodState.source on a host no agent recognises

# Preflight's evidence that something on the host runs static pods (one line each).
KUBELET_EVIDENCE = "\n".join(agent.kubelet_evidence for agent in AGENTS)


def _per_agent(script: Callable[[NodeAgent], str]) -> str:
    """A shell script that names the host's agent on its first line, then runs that
    agent's part (``none`` and nothing else when no agent recognises the host)."""
    branches = [
        f"{'if' if i == 0 else 'elif'} {agent.detect}; then echo {agent.name};\n"
        f"{script(agent)}\n"
        for i, agent in enumerate(AGENTS)
    ]
    return "".join(branches) + f"else echo {NONE}; fi\n"


def _ask(host: RemoteHost, script: Callable[[NodeAgent], str]) -> tuple[NodeAgent | None, str]:
    result = host.run(_per_agent(script), sudo=True, check=False, timeout=20)
    first, _, body = result.stdout.decode("utf-8", "replace").partition("\n")
    agent = next((a for a in AGENTS if a.name == first.strip()), None)
    return agent, body


def read_pod_states(host: RemoteHost) -> dict[str, PodState]:
    """Every component's static pod as the host's node reports it."""
    agent, body = _ask(host, lambda a: a.read_script)
    if agent is None:
        return {
            c: PodState(c, "Unknown", None, 0, "no kubelet status source on the host", NONE)
            for c in COMPONENTS
        }
    return agent.parse_states(body)


def pod_log_tail(host: RemoteHost, component: str) -> str:
    """The component's output since its last start (head and tail of a long one)."""
    agent, body = _ask(host, lambda a: a.log_script(component))
    return agent.log_excerpt(body) if agent is not None else ""


def node_agent(host: RemoteHost) -> NodeAgent | None:
    """The host's agent (None: nothing on it reports static pods yet)."""
    agent, _ = _ask(host, lambda _a: ":")
    return agent


def logs_hint(source: str) -> str:
    """How to read a pod's log on a node whose states came from ``source``."""
    agent = next((a for a in AGENTS if a.name == source), None)
    return agent.logs_hint if agent is not None else "the node's kubelet and container logs"
