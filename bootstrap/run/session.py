"""One run of the tool against one inventory: lazily loaded PKI, plans, connections, tunnels.

Phases share this object (kubeadm's ``InitData`` idea): each asks for what it needs and
the first asker pays for it. ``close()`` releases tunnels, connections and the in-memory
client credentials.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bootstrap.inventory.model import COMPONENTS, Inventory, Master
from bootstrap.local.console import Console
from bootstrap.model import RemoteHost

if TYPE_CHECKING:
    from bootstrap.etcd.layout import EtcdLayout
    from bootstrap.local.memfile import MemoryFiles
    from bootstrap.manifests.components import EtcdCluster
    from bootstrap.manifests.plan import MasterPlan
    from bootstrap.pki import ClusterPKI
    from bootstrap.transport.push import FileChange

T = TypeVar("T")

_CONNECT = "connect"  # the read_ahead key of connect_ahead


@dataclass(frozen=True)
class Options:
    accept_new_host_keys: bool = False
    ignore_preflight_errors: tuple[str, ...] = ()
    components: tuple[str, ...] = COMPONENTS
    templates_dir: Path | None = None
    sudo_password: str | None = None
    delivery: str = "file"  # "file": manifests dir over SSH; "http": published (delivery.py)
    serve_url: str | None = None  # the running `bootstrap serve` (http delivery)
    offline: bool = False  # never contact hosts (render): etcd layout from the record only
    # init runs etcd and control-plane in this invocation: a fresh cluster's control-plane
    # pods may start together with etcd (rollout.fresh_start)
    overlap_fresh_start: bool = False


def default_state_dir(inventory: Inventory) -> Path:
    return Path(".bootstrap") / inventory.cluster_name


@dataclass
class Session:
    inventory: Inventory
    state_dir: Path
    options: Options = field(default_factory=Options)
    console: Console = field(default_factory=Console)
    _hosts: dict[str, RemoteHost] | None = None
    _unreachable: dict[str, str] = field(default_factory=dict)  # connect_reachable's misses
    _diffs: dict[str, list[FileChange]] = field(default_factory=dict)
    _written: dict[str, list[FileChange]] = field(default_factory=dict)
    _tunnels: dict[tuple[str, int], int] = field(default_factory=dict)
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _memory: MemoryFiles | None = None
    _borrowed_hosts: bool = False  # the connections belong to another session (upgrade)
    # Masters of the inventory that are not etcd members yet: the init phases leave them
    # out (``masters``) and the join phase adds them one at a time (bootstrap.workflow.join).
    # Changed only through defer_joins / mark_joined.
    _pending_joins: set[str] = field(default_factory=set)
    # Built on first use; dropped when a master's etcd rendering changes (set_etcd_cluster).
    _plans: dict[str, MasterPlan] | None = None
    # Held while the plans are built: the per-host threads all ask for them at once, and
    # each building its own copy tripled the CPU time under the GIL (measured: 3 x 150 ms
    # in parallel instead of one 50 ms build).
    _plans_lock: threading.Lock = field(default_factory=threading.Lock)
    # Read-only questions to the hosts started ahead of their use (read_ahead/answer).
    _ahead: dict[str, Future[Any]] = field(default_factory=dict)

    # --- local, pure parts ------------------------------------------------------

    @cached_property
    def pki(self) -> ClusterPKI:
        from bootstrap.pki import ensure_pki

        return ensure_pki(self.inventory, self.state_dir)

    @cached_property
    def etcd_layout(self) -> EtcdLayout:
        """How each master's etcd is rendered (recorded, read back, new or joining)."""
        from bootstrap.run.etcdview import resolve_layout

        return resolve_layout(self, self.state_dir, offline=self.options.offline)

    @property
    def plans(self) -> dict[str, MasterPlan]:
        """Every master's desired tree, built from the inventory, PKI and etcd layout."""
        with self._plans_lock:
            plans = self._plans
            if plans is None:
                from bootstrap.manifests.plan import build_plans

                plans = build_plans(
                    self.inventory,
                    self.pki,
                    templates_dir=self.options.templates_dir,
                    etcd_cluster_for=self.etcd_layout.cluster_for,
                )
                self._plans = plans
            return plans

    def read_ahead(self, key: str, read: Callable[[], Any]) -> None:
        """Start a read-only question to the hosts in the background, so that its round
        trips overlap the steps before its use (``answer``). Never for anything that
        writes, locally or remotely: a run refused by those steps must change nothing."""
        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(read())
            except BaseException as exc:  # handed to whoever asks for the answer
                future.set_exception(exc)

        with self._lock:
            self._ahead[key] = future
        threading.Thread(target=run, name=f"ahead-{key}", daemon=True).start()

    def answer(self, key: str, read: Callable[[], T]) -> T:
        """The result of ``read_ahead(key, ...)`` (its error raised here, where it is
        used), or ``read()`` now when nothing was started."""
        with self._lock:
            future = self._ahead.pop(key, None)
        if future is None:
            return read()
        result: T = future.result()
        return result

    def prepare_plans(self) -> None:
        """Start building the plans in the background, so that the round trips of the next
        step (preflight) overlap the ~50-100 ms of rendering. A failure is not reported
        here: the first use of ``plans`` builds again and raises it where it belongs."""

        def build() -> None:
            with contextlib.suppress(Exception):
                self.plans  # noqa: B018

        threading.Thread(target=build, name="plans", daemon=True).start()

    def set_etcd_cluster(self, name: str, cluster: EtcdCluster) -> None:
        """``name``'s etcd is rendered with ``cluster`` from now on (a join): the plans and
        ``name``'s diff are computed again on their next use."""
        self.etcd_layout.set_cluster(name, cluster)
        with self._plans_lock:
            self._plans = None
        with self._lock:
            self._diffs.pop(name, None)

    # --- masters joining the cluster ------------------------------------------------

    @property
    def pending_joins(self) -> frozenset[str]:
        """Inventory masters that are not etcd members yet (left out of ``masters``)."""
        return frozenset(self._pending_joins)

    def defer_joins(self, names: Iterable[str]) -> None:
        """Leave ``names`` out of ``masters`` until each has joined (mark_joined)."""
        self._pending_joins.update(names)

    def mark_joined(self, name: str) -> None:
        """``name`` is a voting member now: it counts among ``masters`` again."""
        self._pending_joins.discard(name)

    @property
    def masters(self) -> tuple[Master, ...]:
        """The masters in (or forming) the cluster: the inventory minus pending joins."""
        if not self._pending_joins:
            return self.inventory.masters
        return tuple(m for m in self.inventory.masters if m.name not in self._pending_joins)

    def cluster_ca_sha256(self) -> str:
        first = self.inventory.masters[0].name
        return self.pki.host_files(first)["/etc/kubernetes/pki/ca.crt"].sha256

    # --- hosts -------------------------------------------------------------------

    @property
    def hosts(self) -> dict[str, RemoteHost]:
        if self._hosts is None:
            self._hosts = self.answer(_CONNECT, self._connect_all)
        return self._hosts

    def _connect_all(self) -> dict[str, RemoteHost]:
        from bootstrap.transport import connect_all

        connected = connect_all(
            list(self.inventory.masters),
            accept_new_host_keys=self.options.accept_new_host_keys,
            sudo_password=self.options.sudo_password,
        )
        return dict(connected)

    def connect_ahead(self) -> None:
        """Start connecting every master now, in the background, while the command
        imports and loads what it needs (~0.1 s of SSH handshakes that mostly wait on the
        hosts); ``hosts`` returns the connections, or raises the connect error, when first
        used. Only for commands that need every master, once their local checks passed."""
        if self._hosts is None:
            self.read_ahead(_CONNECT, self._connect_all)

    def connect_reachable(self) -> dict[str, str]:
        """Connect every master that answers; name -> error text for those that do not.

        For removal and reset, where a dead host must not stop the rest. Later ``hosts``
        holds only the reachable ones.
        """
        from bootstrap.errors import HostUnreachable, OperationTimeout
        from bootstrap.transport import connect

        if self._hosts is not None:
            return dict(self._unreachable)
        hosts: dict[str, RemoteHost] = {}
        failed: dict[str, str] = {}
        errors: list[BaseException] = []

        def one(master: Master) -> None:
            try:
                hosts[master.name] = connect(
                    master,
                    accept_new_host_keys=self.options.accept_new_host_keys,
                    sudo_password=self.options.sudo_password,
                )
            except (HostUnreachable, OperationTimeout) as exc:  # a dead host, not a bad key
                failed[master.name] = exc.message.splitlines()[0]
            except BaseException as exc:  # host key, auth: never skipped silently
                errors.append(exc)

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(self.inventory.masters)))) as pool:
            list(pool.map(one, self.inventory.masters))
        if errors:
            for host in hosts.values():
                with contextlib.suppress(Exception):
                    host.close()
            raise errors[0]
        self._hosts = {m.name: hosts[m.name] for m in self.inventory.masters if m.name in hosts}
        self._unreachable = dict(failed)
        return failed

    def host(self, name: str) -> RemoteHost:
        return self.hosts[name]

    def each_host(
        self, fn: Callable[[Master, RemoteHost], T], masters: Sequence[Master] | None = None
    ) -> dict[str, T]:
        """Run fn on every master in parallel; the first error wins (others still finish)."""
        chosen = list(masters if masters is not None else self.masters)
        hosts = self.hosts
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(chosen)))) as pool:
            futures = {m.name: pool.submit(fn, m, hosts[m.name]) for m in chosen}
            results: dict[str, T] = {}
            errors: list[BaseException] = []
            for name, fut in futures.items():
                try:
                    results[name] = fut.result()
                except BaseException as exc:  # re-raised below, after every host finished
                    errors.append(exc)
            if errors:
                raise errors[0]
            return results

    # --- desired state vs hosts ------------------------------------------------------

    def diff(self, name: str) -> list[FileChange]:
        """The host's changes against its whole desired tree, computed once per run."""
        from bootstrap.transport.push import diff_host

        with self._lock:
            cached = self._diffs.get(name)
        if cached is None:
            cached = diff_host(self.host(name), self.plans[name].tree)
            with self._lock:
                self._diffs[name] = cached
        return cached

    def record_written(self, name: str, changes: Sequence[FileChange]) -> None:
        with self._lock:
            self._written.setdefault(name, []).extend(changes)

    def wrote_anything(self) -> bool:
        """Whether this run has written a file on any host (a pod may restart for it)."""
        with self._lock:
            return any(self._written.values())

    def written(self) -> dict[str, list[FileChange]]:
        with self._lock:
            return {k: list(v) for k, v in self._written.items()}

    # --- tunnels and credentials -------------------------------------------------------

    def tunnel(self, name: str, remote_port: int) -> int:
        """A local port forwarded to the master's 127.0.0.1:remote_port, kept for the run."""
        with self._lock:
            port = self._tunnels.get((name, remote_port))
        if port is None:
            port = self._exit.enter_context(self.host(name).forward(remote_port))
            with self._lock:
                self._tunnels[(name, remote_port)] = port
        return port

    def credential(self, name: str, path: str) -> Path:
        """A path holding the master's file ``path`` (a cert, key or kubeconfig of its
        desired tree), so we talk to its etcd and apiserver with exactly the files its own
        components use. The content lives in an anonymous memory file (bootstrap.local.memfile):
        no copy of a key is ever written to disk, and only the files asked for exist."""
        files = self.pki.host_files(name)
        spec = files.get(path) or self.pki.kubeconfig_files(name).get(path)
        if spec is None:
            raise KeyError(f"{name} has no file {path} in its desired tree")
        return self.memory_file(f"{name}:{path}", spec.content)

    def memory_file(self, label: str, content: bytes) -> Path:
        """A path with ``content`` that exists only in this process (see credential)."""
        from bootstrap.local.memfile import MemoryFiles

        with self._lock:
            if self._memory is None:
                self._memory = MemoryFiles(self.state_dir)
            memory = self._memory
        return memory.path(label, content)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def with_inventory(self, inventory: Inventory) -> Session:
        """A session for another inventory of the same cluster (an upgrade's target) that
        uses this session's connections; closing it leaves them to this one."""
        return Session(
            inventory=inventory,
            state_dir=self.state_dir,
            options=self.options,
            console=self.console,
            _hosts=self.hosts,
            _borrowed_hosts=True,
        )

    def close(self) -> None:
        from bootstrap.transport.httpcheck import close_idle_connections

        self._exit.close()
        with self._lock:
            connecting = self._ahead.pop(_CONNECT, None)
        if connecting is not None:  # started, never used (the command failed before)
            with contextlib.suppress(BaseException):
                self._hosts = connecting.result()
        close_idle_connections()  # they ran through the tunnels just closed
        etcd_client = sys.modules.get("bootstrap.etcd.client")  # not imported: no channels
        if etcd_client is not None:
            etcd_client.close_shared_channels()
        if self._hosts and not self._borrowed_hosts:
            for host in self._hosts.values():
                with contextlib.suppress(Exception):
                    host.close()
        if self._memory is not None:
            self._memory.close()
