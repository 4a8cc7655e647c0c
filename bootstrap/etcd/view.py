"""What the live etcd cluster answered: a value, filled by bootstrap.run.etcdview.

Pure data plus the one question every caller asks of it (``require_members``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bootstrap.errors import BootstrapError, OperationError
from bootstrap.etcd.client import Member, Status


@dataclass
class ClusterView:
    members: list[Member] | None  # None: no master answered a member list
    source: str | None  # the master that answered it
    statuses: dict[str, Status | str] = field(default_factory=dict)  # master -> Status or why not
    pods: dict[str, str] = field(default_factory=dict)  # master -> its etcd pod, as the node says
    errors: dict[str, BootstrapError] = field(default_factory=dict)  # why not, as raised

    @property
    def exists(self) -> bool:
        return self.members is not None

    def healthy(self) -> set[int]:
        """Member ids whose own etcd answered Status."""
        return {s.member_id for s in self.statuses.values() if isinstance(s, Status)}

    def why_down(self, name: str) -> str:
        status = self.statuses.get(name, "not asked")
        text = status if isinstance(status, str) else "answers"
        pod = self.pods.get(name)
        return f"{text}; etcd pod: {pod}" if pod else text

    def leader(self) -> int:
        """The leader id the answering members agree on, 0 when none or disagreement."""
        leaders = {s.leader_id for s in self.statuses.values() if isinstance(s, Status)}
        return next(iter(leaders)) if len(leaders) == 1 else 0

    def name_of(self, member_id: int) -> str:
        for m in self.members or []:
            if m.id == member_id:
                return m.name or m.hex_id
        return f"{member_id:x}"


def require_members(view: ClusterView, what: str) -> list[Member]:
    if view.members is None:
        down = "; ".join(f"{n}: {view.why_down(n)}" for n in sorted(view.statuses))
        raise OperationError(
            f"{what}: no etcd member answers ({down or 'no master reachable'})",
            hint="the cluster must be up; `bootstrap status` shows each master's etcd pod",
        )
    return view.members
