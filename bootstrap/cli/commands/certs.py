"""Day-2 commands for certificates, etcd snapshots and version upgrades:

bootstrap certs check [--warn-days N] [-o table|json]
bootstrap certs renew [all|NAME...]
bootstrap etcd snapshot [--out FILE] [--keep N]
bootstrap upgrade --to vX.Y.Z [--etcd-version V] [--dry-run]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bootstrap.cli import add_component_args, add_inventory_args, add_ssh_args, make_session
from bootstrap.errors import echo

DEFAULT_KEEP = 5  # snapshots kept in <state>/snapshots (bootstrap.day2.snapshot.DEFAULT_KEEP)
MAX_WARN_DAYS = 36500  # a century: beyond, timedelta overflows and nothing is meant


def _positive(value: str) -> int:
    # ArgumentTypeError's text is shown as is; a ValueError would print the function's
    # name ("invalid _positive value").
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{echo(value)} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is below 1")
    return number


def _days(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{echo(value)} is not a number of days") from None
    if not 0 <= number <= MAX_WARN_DAYS:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(
            f"{echo(value)} is not between 0 and {MAX_WARN_DAYS} days"
        )
    return number


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `certs`, `etcd` and `upgrade` to the main parser."""
    p = sub.add_parser("certs", help="certificate expiry check and rolling renewal")
    certs = p.add_subparsers(dest="certs_command", metavar="SUBCOMMAND", required=True)

    q = certs.add_parser(
        "check", help="expiry of every certificate on every master (kubeadm's two tables)"
    )
    add_inventory_args(q)
    add_ssh_args(q)
    q.add_argument(
        "--warn-days",
        type=_days,
        default=30.0,
        help="exit 1 when a certificate expires within this many days (default 30)",
    )
    q.add_argument("--output", "-o", choices=("table", "json"), default="table")
    q.set_defaults(func=cmd_certs_check)

    q = certs.add_parser(
        "renew", help="re-issue leaf and kubeconfig client certs, roll them out master by master"
    )
    add_inventory_args(q)
    add_ssh_args(q)
    add_component_args(q)
    q.add_argument(
        "names",
        nargs="*",
        metavar="all|NAME",
        help="kubeadm names (apiserver, etcd-peer, admin.conf, ...); default: all",
    )
    q.add_argument("--keep", type=_positive, default=DEFAULT_KEEP, help="snapshots to keep")
    q.set_defaults(func=cmd_certs_renew, local_check="renew_args")

    p = sub.add_parser("etcd", help="etcd maintenance")
    etcd = p.add_subparsers(dest="etcd_command", metavar="SUBCOMMAND", required=True)
    q = etcd.add_parser("snapshot", help="stream a checked snapshot to this machine")
    add_inventory_args(q)
    add_ssh_args(q)
    q.add_argument("--out", type=Path, help="write here instead of <state>/snapshots/ (not pruned)")
    q.add_argument("--force", action="store_true", help="replace an existing --out file")
    q.add_argument(
        "--keep", type=_positive, default=DEFAULT_KEEP, help="snapshots kept in the state dir"
    )
    q.set_defaults(func=cmd_etcd_snapshot, local_check="snapshot_args")

    p = sub.add_parser("upgrade", help="move the control plane to a new version, master by master")
    add_inventory_args(p)
    add_ssh_args(p)
    add_component_args(p)
    p.add_argument("--to", required=True, metavar="vX.Y.Z", help="target Kubernetes version")
    p.add_argument("--etcd-version", help="pin etcd (default: kubeadm's etcd for the target minor)")
    p.add_argument("--dry-run", action="store_true", help="show the per-master diff only")
    p.add_argument("--keep", type=_positive, default=DEFAULT_KEEP, help="snapshots to keep")
    p.set_defaults(func=cmd_upgrade, local_check="upgrade_args")


def cmd_certs_check(args: argparse.Namespace) -> int:
    from bootstrap.day2.certs import check_cluster
    from bootstrap.workflow import guard

    with make_session(args) as session:
        guard.check(session, "certs check", versions=False)  # wrong state dir: say so first
        return check_cluster(session, warn_days=args.warn_days, output=args.output)


def cmd_certs_renew(args: argparse.Namespace) -> int:
    from bootstrap.day2.renew import renew_cluster
    from bootstrap.workflow import guard
    from bootstrap.workflow.locks import exclusive

    with make_session(args) as session, exclusive(session, "certs renew"):
        # A renewal rolls every master with manifests rendered from the inventory:
        # with an edited version it would be an upgrade without upgrade's checks.
        guard.check(session, "certs renew")
        return renew_cluster(session, args.names, keep=args.keep)


def cmd_etcd_snapshot(args: argparse.Namespace) -> int:
    from bootstrap.day2.snapshot import take_snapshot
    from bootstrap.workflow import guard
    from bootstrap.workflow.locks import exclusive

    with make_session(args) as session:
        # The state dir's lock: snapshots there are rotated (pruned to --keep). Nothing is
        # written on the hosts, so their lock is not taken (a snapshot may run beside an
        # upgrade from another machine).
        with exclusive(session, "etcd snapshot", hosts=False):
            guard.check(session, "etcd snapshot", versions=False)  # wrong state dir: say so
            info = take_snapshot(session, out=args.out, keep=args.keep)
        session.console.out(
            f"etcd snapshot: {info.path} ({info.size} bytes, sha256 {info.sha256}, "
            f"revision {info.revision})"
        )
        return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from bootstrap.day2.upgrade import upgrade_cluster
    from bootstrap.workflow import guard
    from bootstrap.workflow.locks import exclusive

    with make_session(args) as session:
        if args.dry_run:  # writes nothing: no lock
            guard.check(session, "upgrade", versions=False)
            return upgrade_cluster(
                session, args.to, pinned_etcd=args.etcd_version, dry_run=True, keep=args.keep
            )
        with exclusive(session, f"upgrade --to {args.to}"):
            guard.check(session, "upgrade", versions=False)  # upgrade checks versions itself
            return upgrade_cluster(
                session, args.to, pinned_etcd=args.etcd_version, dry_run=False, keep=args.keep
            )
