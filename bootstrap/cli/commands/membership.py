"""`add-master`, `remove-master`, `reset`: growing, shrinking and tearing down (issue 8).

The logic lives in bootstrap.workflow.join (learner joins) and bootstrap.day2.reset
(removal, reset); this module only parses arguments.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the main parser."""
    from bootstrap.cli import add_component_args, add_inventory_args, add_ssh_args

    p = sub.add_parser(
        "add-master",
        help="join one inventory master to the running cluster (etcd learner, then voter)",
    )
    add_inventory_args(p)
    add_ssh_args(p)
    add_component_args(p)
    p.add_argument("name", help="the master's name in the inventory")
    p.set_defaults(func=cmd_add_master, local_check="add_master_args")

    p = sub.add_parser(
        "remove-master",
        help="remove a master: its etcd member first, then its static pods (and --wipe its data)",
    )
    add_inventory_args(p)
    add_ssh_args(p)
    p.add_argument("name", help="inventory master, or a stale etcd member's name or hex id")
    p.add_argument(
        "--force",
        action="store_true",
        help="remove even when the voters left could not form a quorum (risks the cluster)",
    )
    p.add_argument(
        "--wipe", action="store_true", help="also delete its PKI, kubeconfigs and /var/lib/etcd"
    )
    p.set_defaults(func=cmd_remove_master)

    p = sub.add_parser(
        "reset",
        help="tear masters down: etcd member, static pods, PKI, kubeconfigs, etcd data",
    )
    add_inventory_args(p)
    add_ssh_args(p)
    p.add_argument("--master", help="only this master (default: every master, last first)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    p.set_defaults(func=cmd_reset, local_check="reset_args")


def cmd_add_master(args: argparse.Namespace) -> int:
    from bootstrap.cli import make_session
    from bootstrap.workflow import guard
    from bootstrap.workflow.join import add_master
    from bootstrap.workflow.locks import exclusive

    with make_session(args) as session, exclusive(session, f"add-master {args.name}"):
        guard.check(session, "add-master")  # the joiner runs the cluster's versions
        return add_master(session, args.name)


def cmd_remove_master(args: argparse.Namespace) -> int:
    from bootstrap.cli import make_session
    from bootstrap.day2.reset import remove_master
    from bootstrap.workflow import guard
    from bootstrap.workflow.locks import exclusive

    with (
        make_session(args) as session,
        exclusive(session, f"remove-master {args.name}", reachable_only=True),
    ):
        guard.check(session, "remove-master", versions=False)
        return remove_master(session, args.name, force=args.force, wipe_host=args.wipe)


def cmd_reset(args: argparse.Namespace) -> int:
    from bootstrap.cli import make_session
    from bootstrap.day2.reset import reset
    from bootstrap.workflow.locks import exclusive

    with make_session(args) as session:
        if args.dry_run:  # writes nothing: no lock, so it also works during another run
            return reset(session, args.master, yes=args.yes, dry_run=True)
        with exclusive(session, "reset" + (f" --master {args.master}" if args.master else ""),
                       reachable_only=True):
            return reset(session, args.master, yes=args.yes, dry_run=False)
