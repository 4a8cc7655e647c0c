"""`bootstrap upgrade --to vX.Y.Z [--etcd-version V] [--dry-run]`.

Rules (kubeadm's): one minor at a time, never down, never to a minor this tool does not
know; etcd follows kubeadm's etcd-for-minor mapping (inventory.versions) unless pinned,
never moves down (etcd cannot downgrade its data), never pairs with a control plane older
than kubeadm pairs it with, and, as etcd's upgrade guides demand, moves one minor at a
time (3.5 -> 3.6 -> 3.7) from a patch that supports the rolling step (3.6.11+ for 3.7).
The version the cluster RUNS is read from the manifests on the masters (image tags), not
from the inventory.

The inventory stays the user's file: we render with a copy carrying the new versions
and, afterwards, print the two lines to change. Until they are changed the inventory is
behind the cluster, and upgrade refuses to run (a plain ``init`` with it would roll the
cluster back).

Per master: snapshot (once, before the first master), push the new manifests, wait for
each restarted pod and the health gates, next master. A master that fails gets its
previous manifests back from the push backup (/etc/kubernetes/tmp/bootstrap-backup-*)
and the upgrade stops there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from bootstrap.errors import BootstrapError, UsageError, echo
from bootstrap.inventory.model import MANIFESTS_DIR, Master, parse_version
from bootstrap.inventory.versions import (
    DEFAULT_ETCD_FOR_MINOR,
    ETCD_ROLLING_UPGRADE_FROM,
    NEWEST_KUBERNETES_MINOR,
    etcd_too_new_for,
    minor_text,
    unsupported_kubernetes,
    version_text,
)
from bootstrap.model import RemoteHost
from bootstrap.run.session import Session

Version = tuple[int, int, int]


@dataclass(frozen=True)
class UpgradePlan:
    kubernetes_from: str
    kubernetes_to: str
    etcd_from: str
    etcd_to: str

    @property
    def changes_anything(self) -> bool:
        return (self.kubernetes_from, self.etcd_from) != (self.kubernetes_to, self.etcd_to)


def _v(text: str) -> str:
    return "v" + text.lstrip("v")


def _parse(text: str, what: str) -> Version:
    try:
        return parse_version(text)
    except ValueError:
        raise UsageError(
            f"{what} {echo(text)} is not a version", hint="use vMAJOR.MINOR.PATCH"
        ) from None


def plan_upgrade(
    cluster_version: str,
    target: str,
    *,
    cluster_etcd: str,
    pinned_etcd: str | None = None,
) -> UpgradePlan:
    """Check the version rules; raise UsageError (exit 2) for a skip or a downgrade."""
    have = _parse(cluster_version, "the cluster's version")
    want = _parse(target, "--to")
    have_etcd = _parse(cluster_etcd, "the cluster's etcd version")
    if want[0] != have[0]:
        raise UsageError(
            f"cannot upgrade across major versions ({_v(cluster_version)} -> {_v(target)})"
        )
    if want < have:
        raise UsageError(
            f"{_v(target)} is older than the cluster's {_v(cluster_version)}: "
            "downgrades are not supported",
            hint="restore from an etcd snapshot to go back",
        )
    if want[1] > have[1] + 1:
        step = (have[0], have[1] + 1)
        raise UsageError(
            f"cannot skip minor versions: {_v(cluster_version)} -> {_v(target)}",
            hint=f"upgrade one minor at a time: first --to v{minor_text(step)}.x",
        )
    if (want[0], want[1]) not in DEFAULT_ETCD_FOR_MINOR:
        raise UsageError(
            unsupported_kubernetes((want[0], want[1])),
            hint=f"the newest this bootstrap can upgrade to is "
            f"v{minor_text(NEWEST_KUBERNETES_MINOR)}.x",
        )
    if pinned_etcd is not None:
        etcd_to = pinned_etcd.lstrip("v")
        pinned = _parse(etcd_to, "--etcd-version")
        if pinned[:2] < have_etcd[:2]:
            raise UsageError(
                f"--etcd-version {etcd_to} is an older minor than the cluster's etcd "
                f"{cluster_etcd}",
                hint="etcd cannot downgrade its data to an older minor",
            )
        if pinned < have_etcd:
            raise UsageError(
                f"--etcd-version {etcd_to} is older than the cluster's etcd {cluster_etcd}: "
                "bootstrap does not downgrade etcd (kubeadm neither)",
                hint=f"pin {cluster_etcd} or newer",
            )
    elif want[1] != have[1]:
        mapped = DEFAULT_ETCD_FOR_MINOR[(want[0], want[1])]
        # kubeadm never moves etcd down (a pinned newer etcd stays).
        etcd_to = mapped if _parse(mapped, "etcd") >= have_etcd else cluster_etcd
    else:
        etcd_to = cluster_etcd
    _check_etcd_step(_v(cluster_version), have_etcd, _parse(etcd_to, "etcd"), (want[0], want[1]))
    return UpgradePlan(_v(cluster_version), _v(target), cluster_etcd, etcd_to)


def _check_etcd_step(
    cluster_version: str, have: Version, want: Version, kubernetes: tuple[int, int]
) -> None:
    """etcd's own rules for the step ``have`` -> ``want`` under Kubernetes ``kubernetes``:
    the minor kubeadm pairs the etcd with, one minor at a time, and the patch the
    previous minor must have reached before a rolling upgrade (etcd's upgrade guides)."""
    too_new = etcd_too_new_for(want, kubernetes)
    if too_new is not None:
        raise UsageError(too_new, hint="upgrade Kubernetes first, or pin an older etcd")
    if want[:2] == have[:2]:
        return
    if want[:2] > (have[0], have[1] + 1):
        step = (have[0], have[1] + 1)
        raise UsageError(
            f"cannot move etcd from {version_text(have)} to {version_text(want)}: etcd "
            "upgrades one minor at a time",
            hint=f"first --to {cluster_version} --etcd-version {minor_text(step)}.x "
            "(the newest patch of that minor)",
        )
    needed = ETCD_ROLLING_UPGRADE_FROM.get(want[:2])
    if needed is not None and have < needed:
        raise UsageError(
            f"etcd {version_text(have)} cannot be rolled to {minor_text(want)}: etcd's upgrade "
            f"guide needs every {minor_text(have)} member at {version_text(needed)} or later "
            "first (earlier patches may not survive a mixed-version cluster)",
            hint=f"first move etcd within {minor_text(have)}: --to {cluster_version} "
            f"--etcd-version {version_text(needed)} (or a newer {minor_text(have)} patch)",
        )


# --- what the masters run ----------------------------------------------------------------


def image_tag(manifest: bytes) -> str | None:
    """The first container's image tag in a static-pod manifest."""
    try:
        doc = yaml.safe_load(manifest)
        image = str(doc["spec"]["containers"][0]["image"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return None
    _name, sep, tag = image.rpartition(":")
    return tag if sep and "/" not in tag else None


def running_versions(session: Session) -> dict[str, tuple[str | None, str | None]]:
    """master -> (kube-apiserver tag, etcd tag without its "-0" build suffix)."""

    def one(_m: Master, host: RemoteHost) -> tuple[str | None, str | None]:
        found: list[str | None] = []
        for component in ("kube-apiserver", "etcd"):
            try:
                data = host.read_file(f"{MANIFESTS_DIR}/{component}.yaml")
            except BootstrapError:
                found.append(None)
                continue
            found.append(image_tag(data))
        kube, etcd = found
        return kube, etcd.split("-", 1)[0] if etcd else None

    return session.each_host(one)


def cluster_versions(versions: Mapping[str, tuple[str | None, str | None]]) -> tuple[str, str, str]:
    """(lowest Kubernetes version, highest, lowest etcd) over the masters; a mixed
    cluster is an upgrade that stopped half way and may be resumed."""
    missing = [n for n, (k, e) in versions.items() if k is None or e is None]
    if missing:
        raise UsageError(
            f"cannot tell which version runs on {', '.join(sorted(missing))} "
            "(no readable manifests)",
            hint="bring the control plane up with `bootstrap init` first",
        )
    kube = sorted((parse_version(k), k) for k, _ in versions.values() if k)
    etcd = sorted((parse_version(e), e) for _, e in versions.values() if e)
    return kube[0][1], kube[-1][1], etcd[0][1]


def inventory_lines(plan: UpgradePlan) -> str:
    return f"kubernetesVersion: {plan.kubernetes_to}\netcdVersion: {plan.etcd_to}"


def upgrade_cluster(
    session: Session,
    target: str,
    *,
    pinned_etcd: str | None = None,
    dry_run: bool = False,
    keep: int = 5,
) -> int:
    from bootstrap.day2.snapshot import take_snapshot
    from bootstrap.health.waits import ensure_cluster_admins_binding
    from bootstrap.workflow import masterroll
    from bootstrap.workflow.planview import show_plan

    versions = running_versions(session)
    lowest, highest, etcd = cluster_versions(versions)
    inventory = session.inventory
    if parse_version(inventory.kubernetes_version) < parse_version(lowest):
        raise UsageError(
            f"the inventory says kubernetesVersion {inventory.kubernetes_version} but the cluster "
            f"runs {lowest}: the inventory is behind the cluster",
            hint=f"set kubernetesVersion: {_v(lowest)} and etcdVersion: {etcd} in "
            f"{inventory.source or 'the inventory'} (a plain init with it would roll back)",
        )
    plan = plan_upgrade(lowest, target, cluster_etcd=etcd, pinned_etcd=pinned_etcd)
    if parse_version(target) < parse_version(highest):
        raise UsageError(
            f"some masters already run {highest}, newer than --to {_v(target)}",
            hint=f"resume with --to {highest}",
        )
    mixed = "" if lowest == highest else f" (mixed: up to {highest} on some masters)"
    session.console.event(
        "upgrade",
        f"Kubernetes {plan.kubernetes_from}{mixed} -> {plan.kubernetes_to}, "
        f"etcd {plan.etcd_from} -> {plan.etcd_to}",
    )
    new_inventory = dataclasses.replace(
        inventory, kubernetes_version=plan.kubernetes_to, etcd_version=plan.etcd_to
    )
    with session.with_inventory(new_inventory) as target_session:
        if dry_run:
            show_plan(target_session)
            session.console.out("upgrade --dry-run: nothing was changed")
            return 0
        pending = [
            m.name for m in session.masters if masterroll.pending_changes(target_session, m.name)
        ]
        if pending:
            take_snapshot(target_session, keep=keep, phase="upgrade")
            # The target's RBAC before its apiservers: from v1.36 the kubelet client
            # certificate is reissued without O and needs kubeadm:apiserver-kubelet-client.
            ensure_cluster_admins_binding(target_session)
        state = masterroll.roll_masters(target_session, "upgrade", "upgraded", rollback=True)
        session.console.out(
            f"upgrade: {plan.kubernetes_to} (etcd {plan.etcd_to}) on every master; "
            f"upgraded: {', '.join(state.done) or 'none'}"
            + (f"; already there: {', '.join(state.unchanged)}" if state.unchanged else "")
        )
        if (inventory.kubernetes_version, inventory.etcd_version) != (
            plan.kubernetes_to,
            plan.etcd_to,
        ):
            session.console.out(
                f"now update {inventory.source or 'the inventory'} "
                "(bootstrap does not rewrite it):\n"
                + "\n".join(f"  {line}" for line in inventory_lines(plan).splitlines())
            )
        return 0
