"""`bootstrap serve`: the HTTPS manifest source for `init --delivery http`.

The work is in bootstrap.day2.serve.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_LISTEN = "127.0.0.1:8443"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the main parser."""
    from bootstrap.cli import add_inventory_args

    p = sub.add_parser(
        "serve",
        help="serve each master its static-pod PodList over HTTPS (kubelet staticPodURL)",
        description="Serve the documents `init --delivery http` publishes. Runs until "
        "SIGTERM/SIGINT; SIGHUP re-reads the inventory and documents (they are also "
        "re-read when their files change).",
    )
    add_inventory_args(p)
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        help=f"ADDR:PORT the masters reach; the server cert is issued for ADDR "
        f"(default {DEFAULT_LISTEN}; lab: 10.213.<instance>.1:8443; port 0 picks one)",
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import signal
    import sys
    import threading
    from types import FrameType

    from bootstrap.cli import load_inventory, make_console
    from bootstrap.day2 import serve
    from bootstrap.local.files import check_writable_dir
    from bootstrap.pki import ensure_pki
    from bootstrap.run.session import default_state_dir

    serve.parse_listen(args.listen)  # a bad --listen before a key is generated
    console = make_console(args)
    inventory = load_inventory(args.inventory, console)
    state_dir = args.state_dir or default_state_dir(inventory)
    check_writable_dir(state_dir, "state directory")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s serve: %(message)s"
    )
    pki = ensure_pki(inventory, state_dir)
    server = serve.make_server(
        args.inventory, state_dir, args.listen, pki, inventory.key_algorithm
    )
    stop, reload = threading.Event(), threading.Event()

    def on_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        reload.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    # One line on stdout, for scripts (and tests) that asked for port 0.
    console.out(f"serving {serve.url_of(server)} (state {state_dir})")
    serve.run(server, stop, reload)
    return 0
