"""Arguments checked before any host is contacted or any key generated (issue 16.9).

Whatever can be decided on this machine is decided first: flags that only work together,
names that must be in the inventory, versions, output paths. A mistake then costs no
connection, no preflight and no snapshot streamed from every member.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from bootstrap.errors import UsageError, echo
from bootstrap.inventory.model import Inventory
from bootstrap.local.files import check_output_file, check_writable_dir, is_empty_dir, show


def check_local_args(args: argparse.Namespace) -> None:
    """The flags several commands share."""
    delivery = getattr(args, "delivery", None) or "file"
    serve_url = getattr(args, "serve_url", None)
    if delivery == "http":
        if not serve_url and not getattr(args, "serve_url_optional", False):
            raise UsageError(
                "--delivery http needs --serve-url (the URL of the running `bootstrap serve`)",
                hint="e.g. --serve-url https://10.213.5.1:8443; see docs/http-source.md",
            )
        if serve_url:
            check_serve_url(serve_url)
    elif serve_url:
        raise UsageError("--serve-url is only used with --delivery http")
    templates = getattr(args, "templates", None)
    if templates is not None and not Path(templates).is_dir():
        raise UsageError(
            f"--templates {show(templates)} is not a directory",
            hint="give the directory holding the *.j2 templates",
        )
    ignored = getattr(args, "ignore_preflight_errors", None)
    if ignored:
        check_preflight_names(ignored)


def check_serve_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
    if port is None or parts.scheme != "https" or not parts.hostname:
        raise UsageError(
            f"--serve-url {echo(url)} is not https://HOST:PORT",
            hint="the URL `bootstrap serve` printed, e.g. https://10.213.5.1:8443",
        )


def check_preflight_names(names: Sequence[str]) -> None:
    """Known check names (case-insensitive, as kubeadm) or 'all'; a typo would otherwise
    ignore nothing, silently."""
    from bootstrap.node.preflight import check_names

    known = check_names()
    lowered = {k.lower() for k in known}
    unknown = [n for n in names if n.lower() != "all" and n.lower() not in lowered]
    if unknown:
        raise UsageError(
            "--ignore-preflight-errors: unknown check "
            + ", ".join(echo(n) for n in unknown),
            hint=f"known checks: {', '.join(known)}; or all",
        )


def check_render_out(out: Path, *, force: bool) -> None:
    check_writable_dir(out, "--out")
    if not force and not is_empty_dir(out):
        raise UsageError(
            f"--out {show(out)} is not empty",
            hint="pass --force to write into it (files of the same name are replaced), or "
            "choose a new directory",
        )


def check_snapshot_out(out: Path | None, *, force: bool) -> None:
    if out is not None:
        check_output_file(out, "--out", force=force)


def check_master_name(inventory: Inventory, name: str, flag: str, hint: str) -> None:
    if name not in {m.name for m in inventory.masters}:
        names = ", ".join(m.name for m in inventory.masters)
        raise UsageError(
            f"{flag} {echo(name)} is not a master of the inventory ({names})", hint=hint
        )


def check_upgrade_versions(target: str, etcd: str | None) -> None:
    """--to and --etcd-version use the inventory's grammar: each becomes an image tag."""
    from bootstrap.inventory import formats
    from bootstrap.inventory.versions import DEFAULT_ETCD_FOR_MINOR, minor_text

    try:
        version = formats.parse_kubernetes_version(target)
    except ValueError as exc:
        raise UsageError(f"--to {exc}", hint="e.g. --to v1.35.0") from None
    if version[:2] not in DEFAULT_ETCD_FOR_MINOR:
        supported = ", ".join(f"v{minor_text(m)}" for m in sorted(DEFAULT_ETCD_FOR_MINOR))
        raise UsageError(
            f"--to {echo(target)}: Kubernetes v{minor_text(version[:2])} is not supported",
            hint=f"supported: {supported}",
        )
    if etcd is not None:
        try:
            formats.parse_etcd_version(etcd)
        except ValueError as exc:
            raise UsageError(f"--etcd-version {exc}", hint="e.g. --etcd-version 3.6.6") from None


# --- per command (``local_check`` in the subcommand's defaults; run by cli.make_session) ---


def run_local_check(args: argparse.Namespace, inventory: Inventory, state_dir: Path) -> None:
    name = getattr(args, "local_check", None)
    if name is not None:
        _CHECKS[name](args, inventory, state_dir)


def _snapshot_args(args: argparse.Namespace, _inventory: Inventory, _state: Path) -> None:
    check_snapshot_out(args.out, force=args.force)


def _upgrade_args(args: argparse.Namespace, _inventory: Inventory, _state: Path) -> None:
    check_upgrade_versions(args.to, args.etcd_version)


def _renew_args(args: argparse.Namespace, inventory: Inventory, state_dir: Path) -> None:
    from bootstrap.day2.certs import renew_labels

    renew_labels(inventory, state_dir, args.names)  # unknown names, CAs, sa.*: exit 2


def _add_master_args(args: argparse.Namespace, inventory: Inventory, _state: Path) -> None:
    check_master_name(
        inventory,
        args.name,
        "add-master",
        "add it under masters: first (name and address), then run add-master",
    )


def _reset_args(args: argparse.Namespace, inventory: Inventory, _state: Path) -> None:
    import sys

    if not args.dry_run and not args.yes and not sys.stdin.isatty():
        raise UsageError(
            "reset deletes the control plane's files and etcd data and needs confirmation, "
            "but stdin is not a terminal",
            hint="pass --yes (or --dry-run to see what it would do)",
        )
    if args.master is not None:
        check_master_name(
            inventory,
            args.master,
            "--master",
            "for an etcd member without a host use `bootstrap remove-master NAME`",
        )


_CHECKS = {
    "snapshot_args": _snapshot_args,
    "upgrade_args": _upgrade_args,
    "renew_args": _renew_args,
    "add_master_args": _add_master_args,
    "reset_args": _reset_args,
}
