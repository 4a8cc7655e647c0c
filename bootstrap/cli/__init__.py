"""Command line: argument parsing, progress, exit codes (0 ok, 1 failed, 2 bad input).

No logic lives here: commands call into the package. Heavy modules (cryptography,
paramiko, grpc, jinja2) are imported inside the command functions so that
``bootstrap --help`` starts about as fast as the interpreter itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from bootstrap import __version__
from bootstrap.errors import BootstrapError, UsageError, plural, shorten
from bootstrap.local.stdio import say

if TYPE_CHECKING:
    from bootstrap.inventory.model import Inventory
    from bootstrap.local.console import Console
    from bootstrap.run.session import Session

COMPONENT_CHOICES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
PHASE_NAMES = ("preflight", "certs", "kubeconfig", "etcd", "control-plane", "join", "verify")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _components(value: str) -> list[str]:
    chosen = _csv(value)
    unknown = [c for c in chosen if c not in COMPONENT_CHOICES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(COMPONENT_CHOICES)}"
        )
    return chosen


# --- shared argument groups (used by bootstrap.cli.commands.* too) ---------------------------


def add_inventory_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inventory", "-i", required=True, type=Path, help="inventory YAML")
    p.add_argument("--state-dir", type=Path, help="local state (default ./.bootstrap/<cluster>)")


def add_ssh_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="trust and record unknown SSH host keys (never replaces a changed key)",
    )


def add_component_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--components",
        type=_components,
        default=list(COMPONENT_CHOICES),
        help="limit waits and checks to these components (etcd: a lab without kube binaries)",
    )


def add_delivery_args(p: argparse.ArgumentParser, *, nested: bool = False) -> None:
    # nested (`init phase X`): no defaults, so flags given before `phase` survive.
    default: str | None = argparse.SUPPRESS if nested else None
    p.add_argument(
        "--delivery",
        choices=("file", "http"),
        default=default if nested else "file",
        help="file: write manifests into /etc/kubernetes/manifests over SSH; http: publish "
        "them to a running `bootstrap serve` that each kubelet fetches (docs/http-source.md)",
    )
    p.add_argument(
        "--serve-url",
        default=default,
        help="with --delivery http: the server's URL, e.g. https://10.213.5.1:8443",
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with what it echoes bounded: one argument may be 128 KiB long and
    argparse repeats a bad value whole ("invalid choice: '...'")."""

    def error(self, message: str) -> NoReturn:
        super().error(shorten(message, 500))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bootstrap",
        description="Bootstrap a highly-available Kubernetes control plane with stacked etcd.",
    )
    parser.add_argument("--version", action="version", version=f"bootstrap {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every file written")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, also print its cause chain and traceback to stderr (secrets "
        "redacted); give it before the command: bootstrap --debug init ...",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("render", help="write each master's files to a local directory (offline)")
    add_inventory_args(p)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument(
        "--force", action="store_true", help="write into a non-empty --out (replacing files)"
    )
    p.add_argument(
        "--templates", type=Path, help="template directory (default: the installed ones)"
    )
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("inventory", help="check an inventory or print its JSON Schema")
    inv_sub = p.add_subparsers(dest="inventory_command", metavar="SUBCOMMAND", required=True)
    q = inv_sub.add_parser("check", help="validate an inventory file")
    q.add_argument("file", type=Path)
    q.set_defaults(func=cmd_inventory_check)
    q = inv_sub.add_parser("schema", help="print the inventory JSON Schema")
    q.set_defaults(func=cmd_inventory_schema)

    p = sub.add_parser("plan", help="dry run: what init would change on each host (read-only)")
    add_inventory_args(p)
    add_ssh_args(p)
    p.add_argument("--templates", type=Path)
    add_delivery_args(p)
    # plan shows what http delivery would publish without a server (a placeholder URL).
    p.set_defaults(func=cmd_plan, serve_url_optional=True)

    p = sub.add_parser("init", help="bring the control plane up (idempotent)")
    add_inventory_args(p)
    add_ssh_args(p)
    add_component_args(p)
    p.add_argument("--templates", type=Path)
    p.add_argument(
        "--skip-phases", type=_csv, default=[], help=f"comma list of: {', '.join(PHASE_NAMES)}"
    )
    p.add_argument(
        "--ignore-preflight-errors",
        type=_csv,
        default=[],
        help="comma list of preflight check names (as in its table), or 'all'",
    )
    add_delivery_args(p)
    p.set_defaults(func=cmd_init)
    init_sub = p.add_subparsers(dest="init_command", metavar="phase")
    q = init_sub.add_parser("phase", help="run one phase alone")
    q.add_argument("phase", choices=PHASE_NAMES)
    add_delivery_args(q, nested=True)
    q.set_defaults(func=cmd_init_phase)

    p = sub.add_parser(
        "verify", help="check etcd and the control plane from each master's loopback"
    )
    add_inventory_args(p)
    add_ssh_args(p)
    add_component_args(p)
    p.add_argument("--output", "-o", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "status",
        help="pods, etcd roles and certificate expiry per master (exit 1 when anything is wrong)",
    )
    add_inventory_args(p)
    add_ssh_args(p)
    add_component_args(p)
    p.add_argument("--output", "-o", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_status)

    # Day-2 commands live in their own modules; each registers its subcommands here.
    # They import only argparse at this point, so `--help` stays fast.
    from bootstrap.cli.commands import register_all

    register_all(sub)
    return parser


# --- helpers ------------------------------------------------------------------------------


def make_console(args: argparse.Namespace) -> Console:
    from bootstrap.local.console import Console

    return Console(verbose=bool(getattr(args, "verbose", False)))


def load_inventory(path: Path, console: Console) -> Inventory:
    from bootstrap.inventory import load

    inventory = load(path)
    for warning in inventory.warnings:
        console.event("inventory", f"warning: {warning}")
    return inventory


def make_session(args: argparse.Namespace) -> Session:
    from bootstrap.cli import warmup
    from bootstrap.cli.argcheck import check_local_args, run_local_check
    from bootstrap.local.files import check_writable_dir
    from bootstrap.local.memfile import sweep_stale
    from bootstrap.run.session import Options, Session, default_state_dir

    check_local_args(args)  # every flag a host is not needed for, before any host
    warmup.start()
    console = make_console(args)
    inventory = load_inventory(args.inventory, console)
    options = Options(
        accept_new_host_keys=bool(getattr(args, "accept_new_host_keys", False)),
        ignore_preflight_errors=tuple(getattr(args, "ignore_preflight_errors", ()) or ()),
        components=tuple(getattr(args, "components", COMPONENT_CHOICES)),
        templates_dir=getattr(args, "templates", None),
        sudo_password=os.environ.get("BOOTSTRAP_SUDO_PASSWORD") or None,
        delivery=str(getattr(args, "delivery", None) or "file"),
        serve_url=getattr(args, "serve_url", None),
    )
    state_dir = args.state_dir or default_state_dir(inventory)
    check_writable_dir(state_dir, "state directory")
    run_local_check(args, inventory, state_dir)
    sweep_stale(state_dir)  # key copies an older version (or a killed fallback run) left
    return Session(inventory=inventory, state_dir=state_dir, options=options, console=console)


# --- commands ------------------------------------------------------------------------------


def cmd_render(args: argparse.Namespace) -> int:
    from bootstrap.cli.argcheck import check_render_out
    from bootstrap.manifests.render_tree import write_trees

    check_render_out(args.out, force=args.force)
    session = make_session(args)
    session.options = dataclasses.replace(session.options, offline=True)  # never ask hosts
    written = write_trees(session.plans, args.out)
    session.console.event(
        "render",
        f"{plural(written, 'file')} for {plural(len(session.plans), 'master')} in {args.out}",
    )
    return 0


def cmd_inventory_check(args: argparse.Namespace) -> int:
    console = make_console(args)
    inventory = load_inventory(args.file, console)
    names = ", ".join(f"{m.name} ({m.address})" for m in inventory.masters)
    console.out(
        f"{args.file}: ok: cluster {inventory.cluster_name}, "
        f"{plural(len(inventory.masters), 'master')}: {names}"
    )
    return 0


def cmd_inventory_schema(args: argparse.Namespace) -> int:
    from bootstrap.inventory import json_schema

    make_console(args).out(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from bootstrap.workflow import guard
    from bootstrap.workflow.planview import show_plan

    with make_session(args) as session:
        # The same refusals as init, before a PKI is generated into an empty state dir.
        guard.check(session, "init")
        if session.options.delivery == "http":
            from bootstrap.workflow.delivery import show_plan_http

            return show_plan_http(session)
        return show_plan(session)


def _init(args: argparse.Namespace, only: str | None) -> int:
    from bootstrap.workflow import guard
    from bootstrap.workflow.init import INIT_PHASES
    from bootstrap.workflow.join import begin_init
    from bootstrap.workflow.locks import exclusive
    from bootstrap.workflow.phases import find, run_phases, select
    from bootstrap.workflow.steps import ask_preflight_early

    with make_session(args) as session:
        if only is not None:
            phases = [find(INIT_PHASES, only)]
            skip: Sequence[str] = ()
        else:
            phases = list(INIT_PHASES)
            skip = args.skip_phases
        select(phases, skip)  # a bad --skip-phases is exit 2 before any host is asked
        chosen = {p.name for p in select(phases, skip)}
        session.options = dataclasses.replace(
            session.options, overlap_fresh_start={"etcd", "control-plane"} <= chosen
        )
        with exclusive(session, "init" + (f" phase {only}" if only else "")):
            if "preflight" in chosen:
                ask_preflight_early(session)
            # The hosts' CA and versions first: a wrong state dir or an edited version is
            # refused before a PKI is generated and before anything is written.
            guard.check(session, "init")
            # Inconsistent local state (a truncated key, a cert from another CA) is
            # refused before any write.
            session.pki  # noqa: B018
            begin_init(session)  # new masters: check the cluster, join them later
            session.prepare_plans()  # while preflight asks the hosts
            run_phases(session, phases, skip)
        written = session.written()
        total = sum(len(v) for v in written.values())
        hosts = sorted(k for k, v in written.items() if v)
        if total == 0:
            session.console.out("init: 0 changed: the control plane was already converged")
        else:
            session.console.out(f"init: {plural(total, 'file')} changed on {', '.join(hosts)}")
        return 0


def cmd_init(args: argparse.Namespace) -> int:
    return _init(args, None)


def cmd_init_phase(args: argparse.Namespace) -> int:
    return _init(args, args.phase)


def cmd_verify(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    with make_session(args) as session, ThreadPoolExecutor(1, "pod-states") as pool:
        session.connect_ahead()  # while the modules below are imported
        from bootstrap.health import waits
        from bootstrap.workflow import guard

        # The nodes' pod states are read while the guard reads the CA and versions (one
        # round trip instead of two); the guard still speaks first: wrong state dir.
        states = pool.submit(waits.pod_states, session)
        guard.check(session, "verify", versions=False)
        report = waits.verify(session, states.result())
        if args.output == "json":
            session.console.out(json.dumps(report.to_json(), indent=2, sort_keys=True))
        else:
            session.console.out(report.table())
        return report.exit_code()


def cmd_status(args: argparse.Namespace) -> int:
    from bootstrap.health.status import show_status
    from bootstrap.workflow import guard

    with make_session(args) as session:
        session.connect_reachable()  # a dead master is a row of the table, not an abort
        guard.check(session, "status", versions=False)  # wrong state dir: say so first
        return show_status(session, output=args.output, components=args.components)


# --- entry point ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from bootstrap.local.stdio import guard_std_streams

    stdout_closed = guard_std_streams()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for usage errors, 0 for --help
        return int(exc.code or 0)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    if stdout_closed:
        _report(
            UsageError(
                "standard output is closed, and bootstrap writes its results there",
                hint="redirect it instead (>/dev/null to discard the results)",
            )
        )
        return 2
    debug = bool(getattr(args, "debug", False))
    try:
        return func(args)
    except BootstrapError as exc:
        _debug(exc, debug)
        _report(exc)
        return exc.exit_code
    except OSError as exc:  # the local file system: named with its cause, never a traceback
        from bootstrap.local.files import describe

        error = describe(exc)
        _debug(exc, debug)
        _report(error)
        return error.exit_code
    except KeyboardInterrupt:
        say("bootstrap: interrupted; files already written were written whole (atomic)")
        return 130
    except Exception as exc:
        if not debug:
            raise  # without --debug: Python's own report, as always
        _debug(exc, debug)
        say(f"bootstrap: internal error: {type(exc).__name__} (the traceback is above)")
        return 1


def _debug(exc: BaseException, debug: bool) -> None:
    """--debug: where the error came from, before the usual one-line report."""
    if not debug:
        return
    from bootstrap.local.debug import format_chain

    say("bootstrap: --debug: the error's cause chain and traceback (secrets redacted):")
    say(format_chain(exc).rstrip("\n"))


def run() -> NoReturn:
    """The console script: main(), then a prompt exit.

    A normal interpreter exit after a run against hosts costs ~0.2 s (measured on the
    lab: each paramiko transport thread sits out its 0.1 s read timeout, then grpc's C
    core tears down), a sixth of a zero-change re-run. Everything we write is written
    and closed before main() returns, so once only daemon threads are left we flush and
    leave directly. Worker threads still running (an interrupted push finishing its file)
    get the normal exit, which waits for them.
    """
    code = main()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(code)
    if "logging" in sys.modules:  # not imported by every command: keep --help fast
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _report(exc: BootstrapError) -> None:
    from bootstrap.local.stdio import report_lines

    kind = "error" if exc.exit_code == 2 else "failed"
    say(report_lines(f"bootstrap: {kind}: {exc}", exc.hint))


__all__ = ["UsageError", "main", "run"]
