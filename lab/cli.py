"""`python -m lab up|down|status|exec|logs` (root only). Exit: 0 ok, 1 failed, 2 bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab import api, kubebin
from lab.config import DEFAULT_SUBNET, INSTANCE, LAB_BOOTSTRAP_STATE, LAB_CMD, NODE_MODES, LabError


def _say(msg: str) -> None:
    print(msg, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    info = api.up(
        masters=args.masters, bin_dir=args.bin_dir, subnet=args.subnet, log=_say,
        kubernetes=args.kubernetes, etcd=args.etcd,
        extra_kubernetes=tuple(args.also_kubernetes), extra_etcd=tuple(args.also_etcd),
        node=args.node,
    )
    _say(f"lab up: {len(info.hosts)} hosts in {info.seconds:.2f} s")
    for host in info.hosts:
        _say(f"  {host.name:4} {host.address}  ssh root@{host.address} (key {info.ssh_key})")
    _say(f"  etcd {info.etcd_version} from {info.bin_dir}")
    _say(
        "  kube binaries: " + (", ".join(info.kube_binaries) or "none (image unavailable)")
        + f"; kubernetesVersion {info.kubernetes_version}"
    )
    if info.node == "kubelet":
        _say("  node: the real kubelet + containerd in every host (standalone until "
             "bootstrap writes kubelet.conf, then registered)")
    else:
        _say(f"  runner: {'started in every host' if info.runner else 'NOT started (missing)'}")
    for note in info.notes:
        _say(f"  note: {note}")
    _say(f"inventory: {info.inventory}")
    _say(next_hint(info.inventory))
    return 0


def next_hint(inventory: Path) -> str:
    """What to run next, for this instance (its state dir, its LAB_INSTANCE)."""
    state = f" --state-dir {LAB_BOOTSTRAP_STATE}" if INSTANCE else ""
    return f"next: bootstrap init --inventory {inventory}{state}; tear down: {LAB_CMD} down"


def cmd_bins(args: argparse.Namespace) -> int:
    started = time.monotonic()
    path = kubebin.ensure_bins(
        args.kubernetes, args.etcd, _say, tuple(args.also_kubernetes), tuple(args.also_etcd),
        node=args.node == "kubelet",
    )
    for binary in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
        _say(f"  {binary.name:24} -> {binary.resolve()}")
    _say(f"bins: {path} ({time.monotonic() - started:.1f} s)")
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    if api.down(log=_say):
        _say("lab down: nothing left (no netns, links, routes, mounts or processes)")
    else:
        _say("nothing to tear down")
    return 0


def _pods(runner_status: Any) -> list[dict[str, Any]]:
    """The runner's pod entries, whether status.json holds a list or a name->pod map."""
    pods = runner_status.get("pods", runner_status) if isinstance(runner_status, dict) else []
    if isinstance(pods, dict):
        return [{"name": k, **v} if isinstance(v, dict) else {"name": k} for k, v in pods.items()]
    return [p for p in pods if isinstance(p, dict)] if isinstance(pods, list) else []


def cmd_status(args: argparse.Namespace) -> int:
    st = api.status()
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0 if st["hosts"] else 1
    if not st["hosts"]:
        _say("no lab is up")
        return 1
    for host in st["hosts"]:
        if st.get("node") == "kubelet":
            runs = (f"containerd {host.get('containerd_pid') or 'not running'}, "
                    f"kubelet {host.get('kubelet_pid') or 'not running'}")
        else:
            runs = f"runner {host['runner_pid'] or 'not running'}"
        _say(
            f"{host['name']} {host['address']}: netns {'yes' if host['netns'] else 'NO'}, "
            f"init {host['init_pid'] or 'DEAD'}, sshd {host['sshd_pid'] or 'DEAD'}, {runs}"
        )
        if host["runner_status_error"]:
            _say(f"    pod status: {host['runner_status_error']}")
        for pod in _pods(host["runner_status"]):
            restarts = pod.get("restartCount", pod.get("restarts"))
            _say(
                f"    {pod.get('name', '?'):40} phase={pod.get('phase')} ready={pod.get('ready')} "
                f"restarts={restarts} reason={pod.get('reason') or ''}"
            )
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise LabError("exec needs a command: python -m lab exec m1 -- CMD...", exit_code=2)
    # Inherit stdio: interactive use and streaming output.
    return subprocess.run(
        [*api.enter_argv(args.host), *argv], env=api.host_env(), check=False
    ).returncode


def cmd_logs(args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(api.pod_log(args.host, args.pod))
    return 0


def _add_version_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubernetes", default=kubebin.DEFAULT_KUBERNETES, metavar="vX.Y.Z",
                   help=f"k8s.io/kubernetes version (default {kubebin.DEFAULT_KUBERNETES})")
    p.add_argument("--etcd", default=kubebin.DEFAULT_ETCD, metavar="vX.Y.Z",
                   help=f"go.etcd.io/etcd version (default {kubebin.DEFAULT_ETCD})")
    p.add_argument("--also-kubernetes", action="append", default=[], metavar="vX.Y.Z",
                   help="a further Kubernetes version whose images the nodes get (upgrades)")
    p.add_argument("--also-etcd", action="append", default=[], metavar="vX.Y.Z",
                   help="a further etcd version whose image the nodes get (upgrades)")
    p.add_argument("--node", choices=NODE_MODES, default="runner",
                   help="runner: the lab's process-mode kubelet (default, fast); kubelet: "
                   "the real kubelet with containerd, runc and crictl, built from their Go "
                   "modules, static pods as containers and mirror pods in the API")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create the hosts, start sshd and the runner")
    up.add_argument("--masters", type=int, default=3)
    up.add_argument("--bin-dir", type=Path, default=None,
                    help="etcd and kube-* binaries (e.g. official releases); default: the "
                    "lab's own builds from Go modules (see `bins`)")
    _add_version_flags(up)
    up.add_argument("--subnet", default=DEFAULT_SUBNET)
    up.set_defaults(func=cmd_up)
    bins = sub.add_parser(
        "bins", help="build (or reuse) Kubernetes and etcd from their Go modules; print the dir"
    )
    _add_version_flags(bins)
    bins.set_defaults(func=cmd_bins)
    down = sub.add_parser("down", help="end every lab process, remove everything, check")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="hosts, sshd, runner and pod table")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    ex = sub.add_parser("exec", help="run a command inside a host")
    ex.add_argument("host")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)
    logs = sub.add_parser("logs", help="print a pod's log from a host")
    logs.add_argument("host")
    logs.add_argument("pod")
    logs.set_defaults(func=cmd_logs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return rc
