"""Supported versions, kubeadm's etcd-for-Kubernetes mapping and etcd's upgrade rules.

Public because upgrades reuse it: an upgrade to a new minor moves etcd to the version
kubeadm would deploy for that minor. Sources for every number: docs/v1.37.md.
"""

from __future__ import annotations

Version = tuple[int, int, int]
Minor = tuple[int, int]

# What the newest release of each kubeadm minor deploys for its own minor (its
# SupportedEtcdVersion[minor], or the nearest entry when the map has none, as
# kubeadm's EtcdSupportedVersion falls back). Read in constants.go of kubeadm v1.34.4
# (34 -> 3.6.5), v1.35.4 (35 -> 3.6.6), v1.36.3 (36 -> 3.6.8) and v1.37.2 (no 37 key:
# 3.7.0, its DefaultEtcdVersion). 1.31-1.33: 3.5.24 (k/k #134861 and its cherry picks
# to release-1.31..1.33; kubeadm v1.34.4 maps 31-33 the same). 1.30 is end of life and
# was not re-checked. Image tags carry a "-0" suffix.
DEFAULT_ETCD_FOR_MINOR: dict[Minor, str] = {
    (1, 30): "3.5.12",
    (1, 31): "3.5.24",
    (1, 32): "3.5.24",
    (1, 33): "3.5.24",
    (1, 34): "3.6.5",
    (1, 35): "3.6.6",
    (1, 36): "3.6.8",
    (1, 37): "3.7.0",
}

SUPPORTED_KUBERNETES_MINORS: tuple[Minor, ...] = tuple(sorted(DEFAULT_ETCD_FOR_MINOR))
NEWEST_KUBERNETES_MINOR: Minor = SUPPORTED_KUBERNETES_MINORS[-1]
SUPPORTED_ETCD_MINORS: tuple[Minor, ...] = ((3, 4), (3, 5), (3, 6), (3, 7))

# The oldest Kubernetes minor kubeadm accepts each etcd minor with: 3.6 not below 1.33
# ("we must not add 3.6 etcd to < .33 releases ... please change only 33 and 34",
# kubeadm's maintainer on k/k #132865; released maps start 3.6 at 1.34), and 3.7 not
# below 1.34 (kubeadm v1.37.2's map pairs 3.7.0 with 34-36, nothing older).
ETCD_MIN_KUBERNETES: dict[Minor, Minor] = {
    (3, 6): (1, 33),
    (3, 7): (1, 34),
}

# etcd's upgrade guide: a rolling upgrade to a minor needs every member of the previous
# minor at this patch or later first ("Upgrade etcd from v3.6 to v3.7": 3.6.11).
ETCD_ROLLING_UPGRADE_FROM: dict[Minor, Version] = {
    (3, 7): (3, 6, 11),
}

# etcd 3.7 removed every --experimental-* flag (3.6 accepted them as deprecated); each
# has a replacement that 3.6 already accepts: a feature gate, or the same name without
# the prefix (etcd 3.6.16 --help, "Use ... instead"). A removed flag makes etcd exit 2.
ETCD_FLAGS_REMOVED_SINCE: Version = (3, 7, 0)
ETCD_EXPERIMENTAL_TO_GATE: dict[str, str] = {
    "experimental-initial-corrupt-check": "InitialCorruptCheck",
    "experimental-compact-hash-check-enabled": "CompactHashCheck",
    "experimental-enable-lease-checkpoint": "LeaseCheckpoint",
    "experimental-enable-lease-checkpoint-persist": "LeaseCheckpointPersist",
    "experimental-txn-mode-write-with-shared-buffer": "TxnModeWriteWithSharedBuffer",
    "experimental-stop-grpc-service-on-defrag": "StopGRPCServiceOnDefrag",
}
# v2-era flags 3.7 no longer defines (3.6.16 still accepts --discovery-proxy; the v2
# store flags --enable-v2 and --experimental-enable-v2v3 were already gone in 3.6).
ETCD_V2_FLAGS_REMOVED: frozenset[str] = frozenset({"discovery-proxy"})


def minor_text(minor: tuple[int, ...]) -> str:
    return f"{minor[0]}.{minor[1]}"


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def removed_etcd_flag(etcd: Version, flag: str) -> str | None:
    """Why ``--flag`` cannot be given to etcd ``etcd`` (with its replacement), or None."""
    if etcd < ETCD_FLAGS_REMOVED_SINCE:
        return None
    if flag in ETCD_V2_FLAGS_REMOVED:
        return f"etcd {minor_text(etcd)} has no --{flag} (the v2 discovery proxy is gone)"
    if not flag.startswith("experimental-"):
        return None
    gate = ETCD_EXPERIMENTAL_TO_GATE.get(flag)
    instead = f"--feature-gates={gate}=true" if gate else f"--{flag.removeprefix('experimental-')}"
    return (
        f"etcd {minor_text(etcd)} removed every --experimental-* flag (it exits with code 2 "
        f"at start); use {instead} instead"
    )


def unsupported_kubernetes(minor: Minor) -> str:
    """The refusal for a Kubernetes minor outside the table, naming the newest known."""
    first, newest = SUPPORTED_KUBERNETES_MINORS[0], NEWEST_KUBERNETES_MINOR
    if minor > newest:
        return (
            f"Kubernetes v{minor_text(minor)} is newer than this version of bootstrap knows; "
            f"the newest supported is v{minor_text(newest)} (supported: v{minor_text(first)} "
            f"to v{minor_text(newest)})"
        )
    return (
        f"Kubernetes v{minor_text(minor)} is no longer supported (supported: "
        f"v{minor_text(first)} to v{minor_text(newest)})"
    )


def etcd_too_new_for(etcd: Version, kubernetes: Minor) -> str | None:
    """A refusal when etcd's minor is never paired by kubeadm with so old a control plane."""
    needed = ETCD_MIN_KUBERNETES.get(etcd[:2])
    if needed is None or kubernetes >= needed:
        return None
    return (
        f"etcd {minor_text(etcd)} needs a control plane of v{minor_text(needed)} or newer "
        f"(kubeadm pairs it with nothing older); this one is v{minor_text(kubernetes)}"
    )
