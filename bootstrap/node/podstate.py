"""What the node says about its static pods (``PodState``), and the one interface every
kind of node answers through (``NodeAgent``).

A real master's kubelet is asked through ``crictl`` (bootstrap.node.cri); the lab's
process-mode kubelet through its status file (bootstrap.node.labrunner). Which one a host
has is decided in one place, by probing the host (bootstrap.node.view); nothing else in
the tool knows that there is more than one kind of node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bootstrap.inventory.model import COMPONENTS
from bootstrap.model import FileSpec


@dataclass(frozen=True)
class PodState:
    component: str
    phase: str  # Running, Waiting, Failed, ImageUnavailable, Exited, Absent, Unknown
    ready: bool | None  # None: the source cannot tell
    restarts: int
    reason: str | None
    source: str  # the NodeAgent's name, "none" when the host has no status source
    # Changes when the node adopts a new manifest for the pod (the runner's config hash,
    # the CRI container id), so a rollout can tell "restarted with the new spec".
    instance: str | None = None

    @property
    def running(self) -> bool:
        return self.phase == "Running"

    def describe(self) -> str:
        text = self.phase
        if self.reason:
            text += f" ({self.reason})"
        return text


def unreadable(reason: str, source: str) -> dict[str, PodState]:
    """Every component "Unknown" with the reason: a node's answer we cannot read (it comes
    from the host, so an unexpected shape is a state to report, never an exception)."""
    return {c: PodState(c, "Unknown", None, 0, reason, source) for c in COMPONENTS}


class NodeAgent(Protocol):
    """One kind of node: how to recognise it and how it answers, as shell snippets run on
    the host over SSH (so each question stays one round trip) and parsers of their output."""

    @property
    def name(self) -> str:
        """The PodState.source of its answers."""

    @property
    def title(self) -> str:
        """What runs the static pods there, in messages ("kubelet")."""

    @property
    def logs_hint(self) -> str:
        """How the operator reads a pod's log on such a node."""

    @property
    def detect(self) -> str:
        """A shell condition that holds on a host of this kind."""

    @property
    def read_script(self) -> str:
        """Prints every static pod's state, for ``parse_states``."""

    @property
    def kubelet_evidence(self) -> str:
        """Shell lines printing what shows a kubelet on the host (preflight), or nothing."""

    def parse_states(self, body: str) -> dict[str, PodState]:
        """The components' states from ``read_script``'s output."""

    def log_script(self, component: str) -> str:
        """Prints the component's recent output."""

    def log_excerpt(self, text: str) -> str:
        """``log_script``'s output cut to the last run's head and tail."""

    def manifest_url_source(self, url: str, token: str) -> FileSpec | None:
        """The file that points this node's kubelet at a manifest URL (it then fetches
        its static pods from there), or None: its operator configures that
        (staticPodURL, docs/http-source.md)."""


LOG_HEAD_LINES = 10
LOG_TAIL_LINES = 20


def last_run_excerpt(text: str, start_marker: str | None = None) -> str:
    """The output since the last line holding ``start_marker`` (when given), cut to its
    head and tail: a program that dies on a bad flag prints the reason first and a page of
    usage after it."""
    lines = text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if start_marker and start_marker in line]
    if starts:
        lines = lines[starts[-1] + 1 :]
    if len(lines) <= LOG_HEAD_LINES + LOG_TAIL_LINES:
        return "\n".join(lines)
    skipped = len(lines) - LOG_HEAD_LINES - LOG_TAIL_LINES
    return "\n".join(
        [*lines[:LOG_HEAD_LINES], f"... ({skipped} lines) ...", *lines[-LOG_TAIL_LINES:]]
    )
