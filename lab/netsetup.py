"""Root-namespace networking: safety route, bridge, one netns + veth per host.

Order matters (lab-notes pitfall 1): the `unreachable` route goes in first and out last,
so the lab subnet never routes out of the machine, not even for a moment.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lab.config import BRIDGE, LAB_CMD, PREFIX, HostSpec, LabError, LabPlan

SAFETY_METRIC = "9999"


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def _ip_json(argv: list[str]) -> list[dict[str, Any]]:
    proc = run(["ip", "-j", *argv], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    data = json.loads(proc.stdout)
    return data if isinstance(data, list) else []


def lab_netns() -> list[str]:
    """Network namespaces named bslab-* (ours, by convention)."""
    try:
        names = [p.name for p in Path("/run/netns").iterdir()]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(f"{PREFIX}-"))


def other_labs_netns() -> list[str]:
    """Namespaces of OTHER lab instances (LAB_INSTANCE) that are up right now."""
    try:
        names = [p.name for p in Path("/run/netns").iterdir()]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith("bslab") and not n.startswith(f"{PREFIX}-"))


def lab_links() -> list[str]:
    return sorted(
        str(link["ifname"])
        for link in _ip_json(["link", "show"])
        if _ours(str(link.get("ifname", "")))
    )


def _ours(ifname: str) -> bool:
    """The bridge and our veths; not another lab instance's (bslab1-... vs bslab-...)."""
    return ifname == BRIDGE or ifname.startswith(f"{PREFIX}-")


def subnet_routes(subnet: ipaddress.IPv4Network) -> list[dict[str, Any]]:
    """Routes in the main table whose destination overlaps the lab subnet."""
    found = []
    for route in _ip_json(["route", "show", "table", "main"]):
        dst = str(route.get("dst", ""))
        if dst in ("", "default"):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net.overlaps(subnet):
            found.append(route)
    return found


def safety_route_present(subnet: ipaddress.IPv4Network) -> bool:
    return any(
        r.get("type") == "unreachable" and str(r.get("dst")) == str(subnet)
        for r in subnet_routes(subnet)
    )


# What a lab host is made of, and the Debian package that brings each.
REQUIRED_PROGRAMS: tuple[tuple[str, str], ...] = (
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/bin/ssh-keygen", "openssh-client"),
    ("/usr/bin/sudo", "sudo"),
    ("/usr/bin/nsenter", "util-linux"),
    ("/usr/bin/unshare", "util-linux"),
    ("/usr/sbin/iptables", "iptables"),
)


def require_programs() -> None:
    """One line naming what is missing and the command that installs it (no traceback)."""
    missing = sorted({pkg for path, pkg in REQUIRED_PROGRAMS if not os.access(path, os.X_OK)})
    if shutil.which("ip") is None:
        missing.append("iproute2")
    if missing:
        raise LabError(
            "the lab needs Debian packages that are not installed: " + " ".join(missing),
            hint="run `lab/install-deps.sh` as root (make demo and make test do it)",
            exit_code=2,
        )


def preflight(lab: LabPlan) -> None:
    """Refuse a subnet that is already routed or addressed on this machine."""
    require_programs()
    for route in subnet_routes(lab.subnet):
        raise LabError(
            f"the lab subnet {lab.subnet} is already routed here: {json.dumps(route)}",
            hint=f"a leftover lab? run `{LAB_CMD} down`; else pick another --subnet",
        )
    for link in _ip_json(["addr", "show"]):
        for addr in link.get("addr_info", []):
            if addr.get("family") != "inet":
                continue
            ip = ipaddress.IPv4Address(addr["local"])
            if ip in lab.subnet:
                raise LabError(
                    f"{ip} (on {link.get('ifname')}) lies in the lab subnet {lab.subnet}",
                    hint="pick another --subnet",
                )


def add_safety_route(lab: LabPlan) -> None:
    run(["ip", "route", "add", "unreachable", str(lab.subnet), "metric", SAFETY_METRIC])


def del_safety_route(subnet: str) -> None:
    run(["ip", "route", "del", "unreachable", subnet, "metric", SAFETY_METRIC], check=False)


def add_bridge(lab: LabPlan) -> None:
    run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "add", f"{lab.bridge_address}/{lab.subnet.prefixlen}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def add_host_network(lab: LabPlan, host: HostSpec) -> None:
    run(["ip", "netns", "add", host.netns])
    run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
         "netns", host.netns])
    run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
    run(["ip", "-n", host.netns, "addr", "add",
         f"{host.address}/{lab.subnet.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
    run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])


def check_routes_via_bridge(lab: LabPlan) -> None:
    """Pitfall 1: every host address must route via the bridge, nowhere else."""
    for host in lab.hosts:
        routes = _ip_json(["route", "get", host.address])
        dev = routes[0].get("dev") if routes else None
        if dev != BRIDGE:
            raise LabError(
                f"{host.address} routes via {dev!r}, not the lab bridge {BRIDGE}",
                hint="policy routing or a more specific route is in the way; lab refused",
            )


def set_link(host_veth: str, up: bool) -> None:
    run(["ip", "link", "set", host_veth, "up" if up else "down"])


def del_netns(name: str) -> None:
    run(["ip", "netns", "del", name], check=False)


def del_link(name: str) -> None:
    run(["ip", "link", "del", name], check=False)


# Pitfall 12: only where the FORWARD policy drops (Docker hosts) and bridged frames go
# through iptables at all (br_netfilter). This machine may not even have iptables.
def forward_rule_needed() -> list[str] | None:
    iptables = shutil.which("iptables")
    if iptables is None:
        return None
    proc = run([iptables, "-S", "FORWARD"], check=False)
    if proc.returncode != 0 or "-P FORWARD DROP" not in proc.stdout:
        return None
    return [iptables, "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]


def add_forward_rule(rule: list[str]) -> None:
    run([rule[0], "-I", *rule[1:]])


def del_forward_rule(rule: list[str]) -> None:
    run([rule[0], "-D", *rule[1:]], check=False)


def forward_rule_present(rule: list[str]) -> bool:
    return run([rule[0], "-C", *rule[1:]], check=False).returncode == 0
