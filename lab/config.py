"""Names, paths and addresses of the lab. One place, so `down` and `up` agree."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# LAB_INSTANCE=1..9 runs a second (third...) lab beside the default one: its own state
# dir, names and subnet, so parallel test runs on one machine do not collide.
INSTANCE = os.environ.get("LAB_INSTANCE", "").strip()
if INSTANCE and not (INSTANCE.isdigit() and 1 <= int(INSTANCE) <= 9):
    raise SystemExit(f"LAB_INSTANCE must be a digit 1-9, not {INSTANCE!r}")
_SUFFIX = f"-{INSTANCE}" if INSTANCE else ""
STATE = REPO / "lab" / f".state{_SUFFIX}"
RECORD = STATE / "lab.json"
LOCK = STATE / "lock"
NS_DIR = STATE / "ns"  # persistent mount/UTS namespace handles (a private bind mount)
HOSTS_DIR = STATE / "hosts"
SSH_DIR = STATE / "ssh"
CLIENT_KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
INVENTORY = STATE / "masters.yaml"
BOOTSTRAP_STATE = REPO / ".bootstrap"  # the tool's local PKI: hidden from every host

# How to call this instance's CLI in hints: without LAB_INSTANCE a copied command acts
# on the default lab, not this one.
LAB_CMD = f"LAB_INSTANCE={INSTANCE} python -m lab" if INSTANCE else "python -m lab"
# The tool's state dir for this instance's cluster: each instance's cluster is named after
# it ("lab", "lab-3"), so the default state dir .bootstrap/<clusterName> is never shared.
LAB_BOOTSTRAP_STATE = BOOTSTRAP_STATE / f"lab{_SUFFIX}"

PREFIX = f"bslab{INSTANCE}"  # netns names, veth names and the bridge all start with it
BRIDGE = f"{PREFIX}0"
DEFAULT_SUBNET = f"10.213.{int(INSTANCE or 0)}.0/24"
SUDOERS_FILE = Path(f"/etc/sudoers.d/{PREFIX}-labadmin")
SUDO_USER = "labadmin"

# Inside a host: where the bin dir is bound (read-only) and what the runner is given.
HOST_BIN_DIR = "/run/bslab/bin"
HOST_MANIFESTS = "/etc/kubernetes/manifests"
HOST_RUNNER_STATUS = "/var/lib/kubelet/lab-runner/status.json"
HOST_POD_LOGS = "/var/log/pods"
HOST_RUNNER_LOG = "/var/log/lab-runner.log"
HOST_NODE_LOG = "/var/log/lab-node.log"  # kubelet mode: lab.node (containerd, kubelet)
HOST_SSHD_LOG = "/var/log/sshd.log"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NODE_MODES = ("runner", "kubelet")  # `lab up --node`: what runs the static pods

# The sandbox image containerd is configured with (kubelet mode): kubeadm v1.36/v1.37 pause
# version; the lab builds it from its own pause program (lab/kubebin/pause-v1).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"

# Per-host directory (under hosts/<name>/) -> mount point inside the host.
HOST_DIR_BINDS: tuple[tuple[str, str], ...] = (
    ("etc-kubernetes", "/etc/kubernetes"),
    ("var-lib-etcd", "/var/lib/etcd"),
    ("var-lib-kubelet", "/var/lib/kubelet"),
    ("etc-ssh", "/etc/ssh"),
    ("var-log", "/var/log"),
)
# Kubelet mode only: containerd's root (its content store and snapshots) per host.
NODE_DIR_BINDS: tuple[tuple[str, str], ...] = (("var-lib-containerd", "/var/lib/containerd"),)
HOST_FILE_BINDS: tuple[tuple[str, str], ...] = (
    # bash sources root's ~/.bashrc for every command sshd runs; the machine's own one
    # (pyenv init here: ~150 ms a command) must not run in the hosts. Bound only where the
    # file exists on the machine.
    ("root-bashrc", "/root/.bashrc"),
    ("hostname", "/etc/hostname"),
    ("hosts", "/etc/hosts"),
    ("machine-id", "/etc/machine-id"),
)

MAX_MASTERS = 9


class LabError(Exception):
    """A lab failure with a message for the operator (no traceback)."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


@dataclass(frozen=True)
class HostSpec:
    name: str  # m1, m2, ...
    index: int  # 1-based
    address: str  # 10.213.0.11, ...

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def veth(self) -> str:  # root-namespace end; the host end is eth0
        return f"{PREFIX}-{self.name}"

    @property
    def data_dir(self) -> Path:
        return HOSTS_DIR / self.name

    @property
    def mnt_handle(self) -> Path:
        return NS_DIR / f"{self.name}.mnt"

    @property
    def uts_handle(self) -> Path:
        return NS_DIR / f"{self.name}.uts"


@dataclass(frozen=True)
class LabPlan:
    subnet: ipaddress.IPv4Network
    hosts: tuple[HostSpec, ...]

    @property
    def bridge_address(self) -> str:
        return str(self.subnet.network_address + 1)


def plan(masters: int, subnet: str = DEFAULT_SUBNET) -> LabPlan:
    if not 1 <= masters <= MAX_MASTERS:
        raise LabError(f"--masters must be 1..{MAX_MASTERS}, got {masters}", exit_code=2)
    try:
        net = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise LabError(f"--subnet {subnet!r}: {exc}", exit_code=2) from exc
    if net.prefixlen > 27 or not net.is_private:
        raise LabError(
            f"--subnet {subnet}: need a private IPv4 subnet of /27 or larger",
            hint="the default 10.213.0.0/24 is reserved for the lab",
            exit_code=2,
        )
    hosts = tuple(
        HostSpec(name=f"m{i}", index=i, address=str(net.network_address + 10 + i))
        for i in range(1, masters + 1)
    )
    return LabPlan(subnet=net, hosts=hosts)
